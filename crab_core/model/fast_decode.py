"""Decoding with a static KV cache, optionally compiled (CUDA graphs), and the fused I-LoRA path.

:func:`crab_core.model.llm.decode` grows a dynamic KV cache and re-launches every kernel of every
layer per token from Python. At crab-7b size on one GPU the weights stream in ~3-5 ms per token, while
the ~2,000 kernel launches of 32 layers with I-LoRA on 7 projections cost about as much again. This
module gives the same decoding loop with:

- a :class:`transformers.StaticCache` of ``bucket``-rounded length, so every decode step has the same
  shapes (caches are kept per batch size / length bucket, so CUDA graphs replay on fixed addresses);
- one constant ``(B, Lmax)`` attention mask (left pads 0, everything else 1: the causal mask hides the
  unfilled slots), so the step needs no concatenation;
- the one-token step (embedding -> LLM -> last logits / hidden state) optionally wrapped in
  ``torch.compile(mode="reduce-overhead")``: on CUDA that records the step into a CUDA graph, replayed
  with one launch per token; on CPU it compiles with inductor (no graphs);
- the fused I-LoRA path (:mod:`crab_core.model.ilora_fused`);
- the "all samples finished" check (a device -> host sync) every ``sync_every`` steps instead of every
  step; tokens after EOS are padding either way, so the result is the same.

The prefill runs eagerly (its length varies). Greedy results are token-identical to
:func:`~crab_core.model.llm.decode` (tests/model/test_fast_decode.py); logits agree to float rounding
(attention over the padded static length sums in a different order).

Selection is by option and off by default: ``enable_fast_decode(model, FastDecodeConfig(...))`` on a
:class:`~crab_core.model.crab.CrabModel` makes its ``generate`` use it (``CrabPipeline.load(...,
fast_decode=...)`` does the same); ``disable_fast_decode(model)`` goes back.

Example:
    >>> enable_fast_decode(model, FastDecodeConfig(compile=True))  # on CUDA  # doctest: +SKIP
    >>> model.generate([sample], max_new_tokens=100)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from transformers import StaticCache

from ..errors import ConfigError
from .ilora_fused import any_routing, disable_fused_ilora, enable_fused_ilora, prepare_fused_ilora
from .llm import DecodeOutput, _choose

log = logging.getLogger(__name__)

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class FastDecodeConfig:
    """Options of :class:`StaticDecoder` (all default to the cheapest exact setting, no compilation)."""

    compile: bool = field(default=False, metadata={"help": "torch.compile the one-token decode step."})
    compile_mode: CompileMode = field(
        default="reduce-overhead", metadata={"help": "torch.compile mode (reduce-overhead: CUDA graphs)."}
    )
    backend: str = field(default="inductor", metadata={"help": "torch.compile backend."})
    fused_ilora: bool = field(default=True, metadata={"help": "Use the fused I-LoRA inference path."})
    bucket: int = field(default=64, metadata={"help": "Static cache length rounded up to this multiple."})
    sync_every: int = field(default=8, metadata={"help": "Steps between 'all finished' host checks."})
    max_caches: int = field(
        default=4, metadata={"help": "Static caches kept (one per batch size / length bucket seen)."}
    )

    def __post_init__(self) -> None:
        if self.compile_mode not in CompileMode.__args__:
            raise ConfigError(
                f"compile_mode must be one of {CompileMode.__args__}, got {self.compile_mode!r}"
            )
        if self.compile and not self.fused_ilora:
            raise ConfigError("compile=True needs fused_ilora=True (the eager I-LoRA path breaks the graph)")
        if min(self.bucket, self.sync_every, self.max_caches) <= 0:
            raise ConfigError(
                f"bucket, sync_every and max_caches must be positive, got "
                f"{self.bucket}, {self.sync_every}, {self.max_caches}"
            )


class StaticDecoder:
    """Static-cache decoding loop for one LLM (``decode``-compatible; see the module docstring).

    Args:
        llm: the causal LM (optionally PEFT-wrapped), as passed to :func:`~crab_core.model.llm.decode`.
        config: options.
    """

    def __init__(self, llm: nn.Module, config: FastDecodeConfig | None = None) -> None:
        self.llm = llm
        self.config = config or FastDecodeConfig()
        self._caches: OrderedDict[tuple, StaticCache] = OrderedDict()
        step = self._step_eager
        if self.config.compile:
            step = torch.compile(
                step,
                mode=self.config.compile_mode,
                backend=self.config.backend,
                dynamic=False,
                fullgraph=False,
            )
        self._step = step
        if self.config.fused_ilora:
            enable_fused_ilora(llm)

    def close(self) -> None:
        """Drop the caches and the fused I-LoRA path."""
        self._caches.clear()
        if self.config.fused_ilora:
            disable_fused_ilora(self.llm)

    def _step_eager(
        self, tok: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: StaticCache, hidden: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One token: ``tok`` (B,) -> logits (B, V) float32 and last hidden (B, D) or None."""
        embeds = self.llm.get_input_embeddings()(tok[:, None])
        out = self.llm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=pos,
            cache=cache,
            use_cache=True,
            output_hidden_states=hidden,
        )
        return out.logits[:, -1].float(), out.hidden_states[-1][:, -1] if hidden else None

    def _cache(self, batch: int, length: int, ref: torch.Tensor) -> StaticCache:
        """A reset static cache for ``batch`` x ``length`` (reused: CUDA graphs need fixed addresses)."""
        key = (batch, length, ref.dtype, ref.device)
        cache = self._caches.get(key)
        if cache is None:
            while len(self._caches) >= self.config.max_caches:  # crab-7b: 0.5 MiB per token and sample
                self._caches.popitem(last=False)
            cache = StaticCache(config=self.llm.config, max_cache_len=length)
            self._caches[key] = cache
        else:
            self._caches.move_to_end(key)
            cache.reset()
        return cache

    @torch.no_grad()
    def decode(
        self,
        llm: nn.Module,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        return_logits: bool = False,
        return_hidden: bool = False,
        generator: torch.Generator | None = None,
    ) -> DecodeOutput:
        """Same contract as :func:`crab_core.model.llm.decode` (``llm`` must be this decoder's LLM).

        Args:
            inputs_embeds: ``(B, L, D)`` left-padded prompt embeddings.
            attention_mask: ``(B, L)`` 0 on left pads. position_ids: ``(B, L)``.
        """
        if llm is not self.llm:
            raise ValueError("StaticDecoder.decode got a different LLM than the one it was built for")
        b, length = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if max_new_tokens <= 0:
            empty = torch.zeros(b, 0, dtype=torch.long, device=device)
            return DecodeOutput(empty, torch.zeros(b, dtype=torch.long, device=device))
        bucket = self.config.bucket
        total = -(-(length + max_new_tokens) // bucket) * bucket
        cache = self._cache(b, total, inputs_embeds)
        mask = torch.ones(b, total, dtype=torch.long, device=device)
        mask[:, :length] = attention_mask.long()
        if self.config.fused_ilora:
            prepare_fused_ilora(self.llm)
        # a routing control (interventions, captures) is not traced: run the step eagerly then
        compiled = self.config.compile and not any_routing(self.llm)
        step = self._step if compiled else self._step_eager
        out = self.llm(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            output_hidden_states=return_hidden,
        )
        logits = out.logits[:, -1].float()
        hidden = out.hidden_states[-1][:, -1] if return_hidden else None
        del out
        pos = position_ids[:, -1:] + 1
        done = torch.zeros(b, dtype=torch.bool, device=device)
        lengths = torch.zeros(b, dtype=torch.long, device=device)
        seqs, logits_all, hidden_all = [], [], []
        graphs = compiled and device.type == "cuda" and self.config.compile_mode != "default"
        for i in range(max_new_tokens):
            if return_logits:
                logits_all.append(logits)
            if return_hidden:
                hidden_all.append(hidden)
            tok = _choose(logits, do_sample, temperature, top_p, generator)
            tok = torch.where(done, torch.full_like(tok, pad_token_id), tok)
            seqs.append(tok)
            lengths += (~done).long()
            done |= tok == eos_token_id
            last = i == max_new_tokens - 1
            if last or ((i + 1) % self.config.sync_every == 0 and bool(done.all())):
                break
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            logits, hidden = step(tok, mask, pos, cache, return_hidden)
            if graphs:  # graph outputs are overwritten by the next replay
                logits = logits.clone()
                hidden = hidden.clone() if hidden is not None else None
            pos = pos + 1
        n = int(lengths.max())  # steps past the last EOS (at most sync_every - 1) are dropped
        return DecodeOutput(
            sequences=torch.stack(seqs[:n], 1) if n else torch.zeros(b, 0, dtype=torch.long, device=device),
            lengths=lengths,
            step_logits=torch.stack(logits_all[:n], 1) if return_logits and n else None,
            step_hidden=torch.stack(hidden_all[:n], 1) if return_hidden and n else None,
        )


def enable_fast_decode(model: nn.Module, config: FastDecodeConfig | None = None) -> StaticDecoder:
    """Make ``model.generate`` (a :class:`~crab_core.model.crab.CrabModel`) use a :class:`StaticDecoder`."""
    disable_fast_decode(model)
    decoder = StaticDecoder(model.llm, config)
    model.fast_decoder = decoder
    log.info("fast decode on: %s", decoder.config)
    return decoder


def disable_fast_decode(model: nn.Module) -> None:
    """Back to :func:`crab_core.model.llm.decode` (eager, dynamic cache)."""
    decoder = getattr(model, "fast_decoder", None)
    if decoder is not None:
        decoder.close()
    model.fast_decoder = None
