"""The checked-AVQA flag loss (crab_core/training/flags.py) and its phase weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crab_core.errors import ConfigError
from crab_core.model.splice import IGNORE_INDEX
from crab_core.training.flags import FlagTokens, flag_loss
from crab_core.training.recipe import Phase

IDS = FlagTokens(paren=5, yes=6, no=7)


def test_flag_loss_is_the_mean_over_the_flag_tokens_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 10, generator=g)
    # row 0: answer "x ( no ) ( y", row 1: a "(" then a non-flag token, and an unlabeled "( no"
    labels = torch.tensor([[IGNORE_INDEX, 3, 5, 7, 5, 6], [IGNORE_INDEX, 5, 4, IGNORE_INDEX, 5, 7]])
    labels[1, 4] = IGNORE_INDEX  # the prompt's "(": not an answer token
    want = F.cross_entropy(logits[0, [2, 4]], torch.tensor([7, 6]))
    assert torch.allclose(flag_loss(logits, labels, IDS), want)
    assert flag_loss(logits, torch.full((2, 6), IGNORE_INDEX), IDS) is None


def test_flag_tokens_of_the_shipped_tokenizer():
    from crab_core.checkpoint.pretrained import load_pretrained
    from tests._helpers import REPO

    _, tok, _ = load_pretrained(REPO / "assets" / "crab-tiny")
    ids = FlagTokens.from_tokenizer(tok)
    pieces = tok.hf.convert_ids_to_tokens([ids.paren, ids.yes, ids.no])
    assert pieces[0].lstrip("\u2581") == "(" and pieces[1:] == ["y", "no"]
    answer = tok.encode("The sounds are car (no) and drum (yes).")
    labels = torch.tensor([answer])
    logits = torch.zeros(1, len(answer), len(tok))
    logits[0, :, ids.no] = 5.0  # always "no": right on one flag of two
    loss = flag_loss(logits, labels, ids)
    lse = float(torch.logsumexp(logits[0, 0], 0))
    assert loss is not None and abs(float(loss) - ((lse - 5.0) + lse) / 2) < 1e-4  # "no" right, "y" wrong


def test_flag_tokens_refuse_a_tokenizer_without_flags():
    class Words:
        class hf:  # noqa: N801 - stands for the HF tokenizer attribute
            @staticmethod
            def convert_ids_to_tokens(ids):
                return ["a", "car", "(no),", "a", "drum", "(yes)"]

        @staticmethod
        def encode(text):
            return [0, 1, 2, 3, 4, 5]

    with pytest.raises(ConfigError, match="writes no checked-AVQA flag"):
        FlagTokens.from_tokenizer(Words())


def test_phase_refuses_a_negative_flag_weight():
    with pytest.raises(ConfigError, match="must be >= 0"):
        Phase(name="x", steps=1, trainable=("lora",), tasks={"avqa": 1.0}, flag_weight=-1.0)
