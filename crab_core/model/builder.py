"""Builders: turn a :class:`CrabConfig` into a :class:`CrabModel` (flat args per component)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from ..config import CrabConfig
from ..presets import get_preset
from .beats import BEATs
from .crab import CrabModel
from .ilora_inject import inject_ilora
from .llm import build_llama
from .projector import QFormerProjector
from .seg.seg_module import SegModule
from .vision import VisualEncoder

log = logging.getLogger(__name__)


def build_model(
    config: CrabConfig | str,
    with_seg: bool = True,
    attn_implementation: str = "sdpa",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = 0,
) -> CrabModel:
    """Build a randomly initialised Crab model.

    The order follows the reference (LLM -> I-LoRA injection -> multimodal modules) so that
    LoRA never wraps CLIP's ``q_proj``. Frozen parts (CLIP, BEATs, LLM base) have
    ``requires_grad=False``; LoRA, projectors and the seg module are trainable.

    Args:
        config: a :class:`CrabConfig` or a preset name (``crab-7b``, ``crab-tiny``).
        with_seg: build the segmentation module.
        attn_implementation: ``sdpa`` (default) or ``eager`` for the LLM and CLIP.
        device: where to build; ``"meta"`` builds without memory (shape checks).
        dtype: parameter dtype (e.g. ``torch.bfloat16`` on GPU), used at construction (no float32
            copy); default float32.
        seed: seeds the initialisation (None: leave the global RNG alone).
    """
    cfg = get_preset(config) if isinstance(config, str) else config
    if seed is not None and str(device) != "meta":
        torch.manual_seed(seed)
    ctx = torch.device(device) if device is not None else torch.device("cpu")
    with ctx, _default_dtype(dtype):  # built directly in ``dtype``: no float32 copy (crab-7b bf16 on CPU)
        llm = build_llama(
            vocab_size=cfg.full_vocab_size,
            hidden_size=cfg.llm.hidden_size,
            intermediate_size=cfg.llm.intermediate_size,
            num_hidden_layers=cfg.llm.num_hidden_layers,
            num_attention_heads=cfg.llm.num_attention_heads,
            num_key_value_heads=cfg.llm.num_key_value_heads,
            rms_norm_eps=cfg.llm.rms_norm_eps,
            rope_theta=cfg.llm.rope_theta,
            max_position_embeddings=cfg.llm.max_position_embeddings,
            bos_token_id=cfg.llm.bos_token_id,
            eos_token_id=cfg.llm.eos_token_id,
            attn_implementation=attn_implementation,
        )
        llm.requires_grad_(False)
        llm = inject_ilora(
            llm, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.num_heads, cfg.lora.target_modules
        )
        visual = VisualEncoder.from_config(cfg.vision, attn_implementation)
        audio = BEATs.from_config(cfg.audio)
        d = cfg.llm.hidden_size
        vl = QFormerProjector.from_config(cfg.vl_qformer, d, "visual")
        al = QFormerProjector.from_config(cfg.al_qformer, d, "audio")
        seg = (
            SegModule.from_config(cfg.seg, d, cfg.vision.hidden_size, cfg.vision.patch_size, cfg.compat)
            if with_seg
            else None
        )
    visual.requires_grad_(False).eval()
    audio.requires_grad_(False).eval()
    model = CrabModel(cfg, visual, audio, vl, al, llm, seg)
    if dtype is not None:
        model.to(dtype)
        reset_rotary(model)
    return model


def materialize(model: CrabModel, device: torch.device | str, dtype: torch.dtype | None = None) -> CrabModel:
    """Allocate a meta-device model on ``device`` (values uninitialised until loaded).

    Non-persistent buffers (RoPE inverse frequencies) are recomputed in float32.
    """
    if dtype is not None:
        model.to(dtype)  # cast on meta first, so that no float32 copy is ever allocated
    model = model.to_empty(device=device)
    reset_rotary(model)
    return model


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    """Create floating-point parameters in ``dtype`` (None: leave the default alone)."""
    if dtype is None or not dtype.is_floating_point:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def reset_rotary(model: torch.nn.Module) -> None:
    """Recompute every RoPE ``inv_freq`` buffer in float32 (casts and ``to_empty`` spoil it)."""
    for module in model.modules():
        fn = getattr(module, "compute_default_rope_parameters", None)
        if (
            fn is not None
            and hasattr(module, "inv_freq")
            and getattr(module, "rope_type", "default") == "default"
        ):
            inv, _ = fn(module.config)
            device = module.inv_freq.device
            module.inv_freq = inv.to(device)
            module.original_inv_freq = inv.clone().to(device)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts per top-level component and trainable total."""
    out = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
    out["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out["total"] = sum(p.numel() for p in model.parameters())
    return out
