"""The tokenizer puts Crab's added tokens at the config's ids and keeps text round-trippable."""

from __future__ import annotations

import pytest

from crab_core.errors import ConfigError
from crab_core.presets import crab_tiny
from crab_core.tasks import TASKS, build_prompt
from crab_core.tokenizer import CrabTokenizer


@pytest.fixture(scope="module")
def tok():
    texts = ["the drum sounds from second 2 to 6 <event> drum </event> <range> 2,6 </range>"] * 50
    texts += [build_prompt(TASKS["ave"])]
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


def test_save_and_reload(tok, tmp_path):
    tok.save(tmp_path / "t")
    again = CrabTokenizer.from_dir(tmp_path / "t", crab_tiny())
    assert again.encode("drum sounds") == tok.encode("drum sounds")
    with pytest.raises(ConfigError):
        CrabTokenizer.from_dir(tmp_path / "missing", crab_tiny())
