"""LLaMA decoder construction and a cached decoding loop that honours padding.

The reference passes only ``inputs_embeds`` to ``generate`` (no attention mask, no positions),
so batched generation attends to left pads. Here the mask and positions are always passed, so
a batch decodes exactly like its samples one by one, and the hidden state that *produced* each
token is returned directly, independent of the transformers version (reference bugs 12, 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM


def build_llama(
    *,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    rms_norm_eps: float = 1e-5,
    rope_theta: float = 10000.0,
    max_position_embeddings: int = 4096,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
    attn_implementation: str = "sdpa",
) -> LlamaForCausalLM:
    """Build a randomly initialised ``LlamaForCausalLM`` (untied head) of the given geometry.

    Every argument is keyword-only (twelve numbers in a row are too easy to swap).
    """
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        rms_norm_eps=rms_norm_eps,
        rope_theta=rope_theta,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
        attention_bias=False,
        hidden_act="silu",
    )
    cfg._attn_implementation = attn_implementation
    return LlamaForCausalLM(cfg)


@dataclass
class DecodeOutput:
    """Result of :func:`decode`.

    Attributes:
        sequences: ``(B, N)`` generated ids (new tokens only); after EOS filled with ``pad_id``.
        lengths: ``(B,)`` number of generated tokens per sample, EOS included.
        step_logits: ``(B, N, V)`` raw logits that chose each token, when requested.
        step_hidden: ``(B, N, D)`` last-layer (post-norm) hidden state that produced each
            token, when requested (used for seg tokens).
    """

    sequences: torch.Tensor
    lengths: torch.Tensor
    step_logits: torch.Tensor | None = None
    step_hidden: torch.Tensor | None = None


@torch.no_grad()
def decode(
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
    """Greedy (or sampled) decoding with a KV cache from left-padded prompt embeddings.

    Args:
        llm: a causal LM (optionally peft-wrapped) accepting ``inputs_embeds``.
        inputs_embeds: ``(B, L, D)`` prompt embeddings.
        attention_mask: ``(B, L)`` 0 on left pads.
        position_ids: ``(B, L)`` positions (``cumsum(mask) - 1``).
        max_new_tokens: maximum number of tokens to generate.
    """
    embed = llm.get_input_embeddings()
    b = inputs_embeds.shape[0]
    device = inputs_embeds.device
    mask = attention_mask.long()
    out = llm(
        inputs_embeds=inputs_embeds,
        attention_mask=mask,
        position_ids=position_ids,
        use_cache=True,
        output_hidden_states=return_hidden,
    )
    next_pos = position_ids[:, -1:] + 1
    done = torch.zeros(b, dtype=torch.bool, device=device)
    lengths = torch.zeros(b, dtype=torch.long, device=device)
    seqs, logits_all, hidden_all = [], [], []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if return_logits:
            logits_all.append(logits)
        if return_hidden:
            hidden_all.append(out.hidden_states[-1][:, -1])
        tok = _choose(logits, do_sample, temperature, top_p, generator)
        tok = torch.where(done, torch.full_like(tok, pad_token_id), tok)
        seqs.append(tok)
        lengths += (~done).long()
        done |= tok == eos_token_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=device)], 1)
        out = llm(
            inputs_embeds=embed(tok[:, None]),
            attention_mask=mask,
            position_ids=next_pos,
            cache=_cache_of(out),
            use_cache=True,
            output_hidden_states=return_hidden,
        )
        next_pos = next_pos + 1
    empty = torch.zeros(b, 0, dtype=torch.long, device=device)
    return DecodeOutput(
        sequences=torch.stack(seqs, 1) if seqs else empty,
        lengths=lengths,
        step_logits=torch.stack(logits_all, 1) if return_logits and logits_all else None,
        step_hidden=torch.stack(hidden_all, 1) if return_hidden and hidden_all else None,
    )


def _cache_of(out):
    """The KV cache of a model output (``cache`` in transformers 5, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _choose(logits, do_sample, temperature, top_p, generator):
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits / max(temperature, 1e-5), -1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
