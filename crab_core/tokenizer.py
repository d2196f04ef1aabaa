"""Tokenizer wrapper: the LLM's tokenizer plus Crab's added tokens at the config's ids.

The reference tokenizes prompt and answer separately with no automatic special tokens (BOS
comes from the literal ``<s>`` of the chat template). Added tokens get the ids
``base_vocab + i`` in the order of ``CrabConfig.added_tokens``; this is checked, not assumed.

:func:`task_corpus` is the text a new tokenizer is trained on (the trainer's, and the one a
randomly initialised crab-tiny gets in the inference pipeline, which does not import training).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from .config import CrabConfig
from .errors import ConfigError

log = logging.getLogger(__name__)

BASE_SPECIALS = ("<unk>", "<s>", "</s>")


def task_corpus(samples_per_task: int = 40, seed: int = 0, image_size: int = 32) -> list[str]:
    """Prompts of every task and variant plus the targets / questions of ``samples_per_task``
    SynthAV ``train`` samples per task (rendered at ``image_size``): a tokenizer's training text."""
    from .synthav import TASKS as SYNTH_TASKS
    from .synthav import render_sample, task_seed
    from .tasks import TASKS
    from .tasks.prompts import ORDINALS, build_prompt

    texts: list[str] = []
    for spec in TASKS.values():
        for variant in spec.variants:
            for i in range(len(ORDINALS) if "{nth}" in spec.variant(variant).template else 1):
                q = "Is the drum louder than the guitar?" if spec.needs_question else None
                idx = i if i < spec.num_frames else None
                if "{nth}" in spec.variant(variant).template and idx is None:
                    continue
                texts.append(build_prompt(spec, question=q, variant=variant, frame_index=idx))
    for task in SYNTH_TASKS:
        for k in range(samples_per_task):
            s = render_sample(task_seed("train", task, k, seed), task, image_size=image_size)
            texts.append(s.output)
            if s.question:
                texts.append(s.question)
    return texts


class CrabTokenizer:
    """Encode/decode text with Crab's special tokens.

    Example:
        >>> tok = CrabTokenizer.train_bpe(["a drum sounds"] * 10, crab_tiny())  # doctest: +SKIP
        >>> ids = tok.encode("<s>[INST] hi [/INST]")
    """

    def __init__(self, hf_tokenizer, config: CrabConfig) -> None:
        self.hf = hf_tokenizer
        self.config = config
        self._ensure_added_tokens()

    def _ensure_added_tokens(self) -> None:
        cfg = self.config
        specials = [t for t in cfg.added_tokens if not t.startswith("<mask_")]
        masks = [t for t in cfg.added_tokens if t.startswith("<mask_")]
        missing = [
            t for t in cfg.added_tokens if self.hf.convert_tokens_to_ids(t) in (None, self.hf.unk_token_id)
        ]
        if missing:
            self.hf.add_tokens([t for t in specials if t in missing], special_tokens=True)
            self.hf.add_tokens([t for t in masks if t in missing], special_tokens=False)
        wrong = {
            t: self.hf.convert_tokens_to_ids(t)
            for t, i in cfg.token_ids.items()
            if self.hf.convert_tokens_to_ids(t) != i
        }
        if wrong:
            raise ConfigError(f"tokenizer ids of added tokens differ from the config: {wrong}")
        if len(self.hf) != cfg.full_vocab_size:
            raise ConfigError(
                f"tokenizer has {len(self.hf)} tokens, model vocabulary is {cfg.full_vocab_size}"
            )

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dir(cls, path: str | Path, config: CrabConfig) -> CrabTokenizer:
        """Load a HF tokenizer folder (``tokenizer.json`` or LLaMA's SentencePiece files)."""
        from transformers import AutoTokenizer

        p = Path(path)
        if not p.is_dir():
            raise ConfigError(f"{p}: tokenizer folder not found")
        try:
            hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as exc:
            raise ConfigError(f"{p}: cannot load tokenizer ({exc})") from exc
        return cls(hf, config)

    def save(self, path: str | Path) -> None:
        self.hf.save_pretrained(str(path))

    @classmethod
    def train_bpe(cls, texts: Iterable[str], config: CrabConfig) -> CrabTokenizer:
        """Train a byte-level-free BPE (Metaspace) tokenizer with ``config.base_vocab_size`` tokens.

        Every digit is its own pre-token (``(37,112)`` -> ``▁(`` ``3`` ``7`` ``,`` ``1`` ``1`` ``2`` ``)``;
        a space before a digit is a lone ``▁``), so numbers (ARIG coordinates, seconds) are split
        the same way wherever they occur, instead of into whatever merges the corpus happened to
        favour. Only newly trained tokenizers change: a saved ``tokenizer.json`` keeps its own
        pre-tokenizer when loaded with :meth:`from_dir`.
        """
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFKC()
        # Metaspace first (spaces -> "▁", split on them), then isolate digits inside each piece;
        # the other order would prepend "▁" to every digit piece and break decode(encode(x)) == x.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
        )
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=config.base_vocab_size, special_tokens=list(BASE_SPECIALS), show_progress=False
        )
        tok.train_from_iterator(texts, trainer)
        if tok.get_vocab_size() != config.base_vocab_size:
            log.info(
                "BPE vocabulary has %d tokens (< %d requested): padding with unused tokens",
                tok.get_vocab_size(),
                config.base_vocab_size,
            )
            tok.add_tokens([f"<unused_{i}>" for i in range(config.base_vocab_size - tok.get_vocab_size())])
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="</s>",
            padding_side="left",
            clean_up_tokenization_spaces=False,
        )
        return cls(hf, config)

    # ------------------------------------------------------------------ use
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no automatic special tokens (``<s>`` in the text is BOS)."""
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        text = self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text

    def __len__(self) -> int:
        return len(self.hf)
