"""The tokenizer puts Crab's added tokens at the config's ids, keeps text round-trippable and splits
every digit on its own (newly trained BPEs only; a shipped tokenizer.json loads unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crab_core.config import CrabConfig
from crab_core.errors import ConfigError
from crab_core.presets import crab_tiny
from crab_core.synthav.annotate import TASKS as SYNTH_TASKS
from crab_core.synthav.annotate import build_target
from crab_core.tasks import TASKS, build_prompt
from crab_core.tokenizer import CrabTokenizer

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "crab-tiny"


@pytest.fixture(scope="module")
def answers() -> list[str]:
    """SynthAV answer texts of every task (no rendering: targets only)."""
    return [
        build_target(np.random.default_rng([i, k]), task, "train").output
        for k, task in enumerate(SYNTH_TASKS)
        for i in range(12)
    ]


@pytest.fixture(scope="module")
def tok(answers):
    texts = ["the drum sounds from second 2 to 6 <event> drum </event> <range> 2,6 </range>"] * 50
    texts += [build_prompt(TASKS["ave"])] + answers * 3
    return CrabTokenizer.train_bpe(texts, crab_tiny())


def test_added_token_ids(tok):
    cfg = crab_tiny()
    for t, i in cfg.token_ids.items():
        assert tok.hf.convert_tokens_to_ids(t) == i
    assert len(tok) == cfg.full_vocab_size


def test_prompt_encoding_and_round_trip(tok):
    cfg = crab_tiny()
    prompt = build_prompt(TASKS["ave"])
    ids = tok.encode(prompt)
    assert ids[0] == cfg.llm.bos_token_id
    assert ids.count(cfg.token_ids["<video>"]) == 1 and ids.count(cfg.token_ids["<audio>"]) == 1
    answer = "<event> drum </event>, <range> 2,6 </range>.<mask_start><mask_0><mask_5><mask_end>"
    back = tok.decode(tok.encode(answer))
    assert "<event> drum </event>" in back and "<mask_0>" in back and "<range> 2,6 </range>" in back


def test_synthav_answers_round_trip_exactly(tok, answers):
    """decode(encode(x)) == x for every task's answer, spaces included."""
    for text in answers:
        assert tok.decode(tok.encode(text)) == text


def test_digits_are_single_tokens(tok, answers):
    """ARIG boxes: one token per digit, the same pieces wherever the number occurs."""
    pieces = tok.hf.convert_ids_to_tokens(tok.encode("corner is (37,112) and (133,117)"))
    assert pieces[pieces.index("3") :][:8] == ["3", "7", ",", "1", "1", "2", ")", "▁and"]
    for text in answers:
        for p in tok.hf.convert_ids_to_tokens(tok.encode(text)):
            if any(ch.isdigit() for ch in p) and not p.startswith("<mask_"):  # added tokens stay whole
                assert len(p) == 1, (p, text)
    a = tok.encode("is (112,37)")
    b = tok.encode("is (37,112)")
    digits = {t for t in a + b if tok.hf.convert_ids_to_tokens(t).isdigit()}
    assert len(digits) == 4  # 1, 2, 3, 7: each digit one id in both orders


def test_shipped_tokenizer_loads_unchanged():
    """An existing tokenizer.json keeps its own pre-tokenizer, so the shipped crab-tiny (v5: Metaspace
    then one token per digit) encodes exactly as the raw `tokenizers` file does."""
    from tokenizers import Tokenizer

    path = SHIPPED / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        pytest.skip("no shipped crab-tiny tokenizer")
    cfg = CrabConfig.from_json(SHIPPED / "config.json")
    tok = CrabTokenizer.from_dir(path, cfg)
    saved = json.loads((path / "tokenizer.json").read_text())["pre_tokenizer"]
    assert json.loads(tok.hf.backend_tokenizer.to_str())["pre_tokenizer"] == saved
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    text = "Its coordinate of top left corner is (37,112) and coordinate of bottom right corner is (80,160)"
    assert tok.encode(text) == raw.encode(text, add_special_tokens=False).ids


def test_save_and_reload(tok, tmp_path):
    tok.save(tmp_path / "t")
    again = CrabTokenizer.from_dir(tmp_path / "t", crab_tiny())
    for text in ("drum sounds", "corner is (37,112)"):
        assert again.encode(text) == tok.encode(text)
    with pytest.raises(ConfigError):
        CrabTokenizer.from_dir(tmp_path / "missing", crab_tiny())
