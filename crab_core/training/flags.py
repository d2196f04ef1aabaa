"""An extra loss term on the ``checked`` AVQA flags (:mod:`crab_core.training.layouts`).

In the ``checked`` layout an Audio / Visual existential answer flags each listed class against the
asked one: "The sounds are car (no), drum (yes) and piano (no)." crab-tiny's tokenizer writes a flag
as ``▁(`` then ``no`` or ``y`` (of ``y es``). Under the recipe's LM loss, averaged over every answer
token of a batch, these few tokens carry too small a share of the gradient for the LLM to learn the
comparison they need (``benchmarks/results/avqa_flag_train.md``: the same continuation learns them
with the flags' own loss added, and not without it). :func:`flag_loss` is that term: the mean
cross-entropy of the flag tokens alone, added to the LM loss with the phase's ``flag_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..model.splice import IGNORE_INDEX


@dataclass(frozen=True)
class FlagTokens:
    """Token ids of a flag: the opening ``paren`` and the flag's first piece, ``yes`` / ``no``."""

    paren: int
    yes: int
    no: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> FlagTokens:
        """The ids in ``tokenizer`` (a :class:`~crab_core.tokenizer.CrabTokenizer`).

        Raises:
            ConfigError: the tokenizer does not write a flag as ``(`` then ``no`` / ``y`` pieces.
        """
        pieces = tokenizer.hf.convert_ids_to_tokens(tokenizer.encode("a car (no), a drum (yes)"))
        at = [k for k in range(1, len(pieces)) if pieces[k] in ("no", "y")]
        parens = {pieces[k - 1] for k in at}
        if len(at) != 2 or len(parens) != 1 or next(iter(parens)).lstrip("\u2581") != "(":
            raise ConfigError(f"this tokenizer writes no checked-AVQA flag as '(' + 'no' / 'y': {pieces}")
        return cls(*tokenizer.hf.convert_tokens_to_ids([pieces[at[0] - 1], "y", "no"]))


def flag_loss(logits: torch.Tensor, labels: torch.Tensor, ids: FlagTokens) -> torch.Tensor | None:
    """Mean cross-entropy of the flag tokens of a batch.

    Args:
        logits: ``(B, L, V)`` next-token logits. labels: ``(B, L)`` token ids aligned with the inputs,
            ``IGNORE_INDEX`` off the answers (the model's spliced batch labels).
        ids: the flag's token ids.

    Returns:
        a scalar, or None when the batch holds no flag (an answer token ``yes`` / ``no`` right after
        an answer token ``paren``).
    """
    prev, tgt = labels[:, :-1], labels[:, 1:]
    at = (prev == ids.paren) & ((tgt == ids.yes) | (tgt == ids.no)) & (tgt != IGNORE_INDEX)
    if not at.any():
        return None
    return F.cross_entropy(logits[:, :-1][at].float(), tgt[at])
