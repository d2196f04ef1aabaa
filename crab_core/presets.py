"""Named model presets: the official ``crab-7b`` geometry and the CPU-sized ``crab-tiny``."""

from __future__ import annotations

from .config import (
    BeatsConfig,
    CompatConfig,
    CrabConfig,
    ILoraConfig,
    LLMConfig,
    QFormerConfig,
    SegConfig,
    VisionConfig,
)
from .errors import ConfigError


def crab_7b() -> CrabConfig:
    """Official geometry: LLaMA-2-7B-chat, CLIP ViT-L/14-224, BEATs iter3+, 3-head I-LoRA.

    Official checkpoints were trained with the reference's bugs, so the compat mode is
    ``reference`` (see docs/deviations.md).
    """
    return CrabConfig(name="crab-7b", compat=CompatConfig(mode="reference"))


def crab_tiny() -> CrabConfig:
    """The same classes at CPU-trainable size (SynthAV default model).

    Sized for training from scratch on 2 CPU cores (crab_core.training recipe ``crab-tiny``):
    112-px frames in 14-px patches (8 x 8), 4 query tokens per frame / audio second and one
    Q-Former layer (40 video + 40 audio tokens per 10-s clip), a 4-layer 128-wide LLM. Two choices
    differ from crab-7b's (docs/deviations.md): a learned index embedding per frame / audio second
    on the projected tokens (``unit_embeddings``), and no dropout (Q-Former, LoRA): SynthAV is an
    unlimited data source, and dropout made a CPU training step 1.5x slower
    (benchmarks/tiny_training_choices.py). Training-only: a half class-balanced AVSS loss
    (``SegConfig.avss_balance=0.5``; the pixel-mean CE alone left the AVSS head at background).
    v5: the prompt-token mask decoder (``SegConfig.decoder="prompt"``: the seg tokens are tokens of
    the two-way transformer, and a frame stem gives a 56 x 56 pixel embedding; issue #13).
    """
    return CrabConfig(
        name="crab-tiny",
        vision=VisionConfig(
            hidden_size=96,
            intermediate_size=192,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=112,
            patch_size=14,
            projection_dim=64,
            select_layers=(2, 3, 4),
        ),
        audio=BeatsConfig(
            embed_dim=48,
            encoder_layers=2,
            encoder_embed_dim=64,
            encoder_ffn_embed_dim=128,
            encoder_attention_heads=4,
            conv_pos=32,
            conv_pos_groups=16,
            finetuned_model=False,
        ),
        vl_qformer=QFormerConfig(
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=128,
            num_query_tokens=4,
            encoder_width=96,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            unit_embeddings=16,
        ),
        al_qformer=QFormerConfig(
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=128,
            num_query_tokens=4,
            encoder_width=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            unit_embeddings=16,
        ),
        llm=LLMConfig(
            vocab_size=512,
            hidden_size=128,
            intermediate_size=320,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=1024,
        ),
        lora=ILoraConfig(r=8, alpha=16.0, dropout=0.0, num_heads=3),
        seg=SegConfig(
            prompt_embed_dim=64,
            mlp_dim=256,
            num_heads=4,
            num_queries=16,
            low_res_mask_size=56,
            image_size=112,
            avss_balance=0.5,
            decoder="prompt",
            pixel_dim=32,
        ),
        compat=CompatConfig(mode="corrected"),
    )


PRESETS = {"crab-7b": crab_7b, "crab-tiny": crab_tiny}


def get_preset(name: str) -> CrabConfig:
    """Return the config of a named preset; raises ``ConfigError`` on an unknown name."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
