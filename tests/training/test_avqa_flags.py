"""The checked-flag benchmarks (benchmarks/avqa_flag_probe.py, avqa_flag_train.py): flag positions,
grouped probe folds, reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_flag_probe as fp  # noqa: E402
import avqa_flag_train as ft  # noqa: E402


def test_flag_positions_on_the_shipped_tokenizer():
    from tokenizers import Tokenizer

    path = ROOT / "assets" / "crab-tiny" / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        pytest.skip("no shipped crab-tiny tokenizer")
    tok = Tokenizer.from_file(str(path))
    text = "The question asks whether a car is heard. The sounds are car (yes), drum (no) and piano (no)."
    pieces = tok.encode(text).tokens
    got = fp.flag_positions(pieces)
    assert [yes for _, yes in got] == [True, False, False]
    assert all(pieces[k].lstrip("\u2581") == "(" for k, _ in got)
    assert (
        pieces[got[0][0] - 1].lstrip("\u2581") == "car" and pieces[got[1][0] - 1].lstrip("\u2581") == "drum"
    )
    # a parenthesis that is not a flag is not one
    assert fp.flag_positions(tok.encode("a box (3 7) here").tokens) == []


def test_grouped_probe_reads_a_linear_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    groups = torch.arange(300) // 3
    signal = torch.randn(300, 8, generator=g) + y[:, None].float() * 3
    noise = torch.randn(300, 8, generator=g)
    assert fp.grouped_probe(signal, y, groups) > 0.9
    assert fp.grouped_probe(noise, y, groups) < 0.7


def test_reports_name_their_command_and_columns():
    probe = {
        "args": {"models": "v11=m", "per_type": 5, "seed": 501, "folds": 5, "threads": 1, "name": "x"},
        "models": {
            "v11": {
                "items": 10,
                "flags": 20,
                "majority": 0.7,
                "model": 0.7,
                "model_on_yes": 0.0,
                "model_on_no": 1.0,
                "probe": [0.7, 0.71],
            }
        },
    }
    md = fp.markdown(probe)
    assert (
        "--per-type 5 --name x" in md
        and "| v11 | 10 | 20 | 0.700 | 0.700 | 0.000 | 1.000 | 0.700 | 0.710 |" in md
    )
    cell = {"all": 0.7, "yes": 0.1, "no": 0.9, "flags": 20}
    train = {
        "args": {"model": "m", "steps": 2, "lr": 1e-3, "every": 1, "threads": 1},
        "train_items": 4,
        "test_items": 2,
        "arms": {"flags/lora": {"curve": {0: cell, 1: cell}, "trainable": 9, "seconds": 1.0}},
    }
    md = ft.markdown(train)
    assert "--steps 2 --lr 0.001 --every 1" in md
    assert "| flags/lora | 9 | 0.700 (0.100 / 0.900) | 0.700 (0.100 / 0.900) | 1.0 |" in md
    assert "Flags scored per cell: 20." in md
