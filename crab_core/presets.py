"""Every model geometry, in one place: the official ``crab-7b``, the CPU-sized ``crab-tiny``, the
test-sized ``crab-micro`` and the geometry of a reference-fixture ``config.json``.

Training recipes (:mod:`crab_core.training.recipe`) and the fixture reader
(:mod:`crab_core.checkpoint.fixture`) take their geometries from here; training-only options (e.g.
the class-balanced AVSS loss, ``Phase.avss_balance``) live in the recipe, not in the model config.
"""

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
    (benchmarks/tiny_training_choices.py). Its recipe's seg phase adds a half class-balanced AVSS
    loss (``Phase.avss_balance=0.5``, a training option: the pixel-mean CE alone left the AVSS head at
    background).
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
            decoder="prompt",
            pixel_dim=32,
        ),
        compat=CompatConfig(mode="corrected"),
    )


def crab_micro() -> CrabConfig:
    """A very small geometry of the same classes (tests, smoke runs)."""
    return CrabConfig(
        name="crab-micro",
        vision=VisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
            select_layers=(1, 1, 2),
        ),
        audio=BeatsConfig(
            embed_dim=16,
            encoder_layers=1,
            encoder_embed_dim=32,
            encoder_ffn_embed_dim=64,
            encoder_attention_heads=2,
            conv_pos=16,
            conv_pos_groups=4,
            finetuned_model=False,
        ),
        vl_qformer=QFormerConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_query_tokens=2,
            encoder_width=32,
        ),
        al_qformer=QFormerConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_query_tokens=2,
            encoder_width=32,
        ),
        llm=LLMConfig(
            vocab_size=400,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
        lora=ILoraConfig(r=4, alpha=8.0, dropout=0.05, num_heads=3),
        seg=SegConfig(
            prompt_embed_dim=16,
            mlp_dim=32,
            num_heads=2,
            num_queries=4,
            low_res_mask_size=16,
            image_size=32,
            decoder="prompt",
            pixel_dim=8,
        ),
        compat=CompatConfig(mode="corrected"),
    )


def reference_fixture(raw: dict) -> CrabConfig:
    """The reference-mode geometry described by a reference-fixture ``config.json`` (``raw``, the
    reference's own key names: ``llama``, ``clip_vision``, ``beats``, ``qformer_bert_config``, ...).

    Raises:
        KeyError: a required key is missing (:func:`crab_core.checkpoint.fixture.config_from_fixture`
            turns it into a ``CheckpointError``).
    """
    lm, cv, bt, qb = raw["llama"], raw["clip_vision"], raw["beats"], raw["qformer_bert_config"]
    qo, il, sg = raw["qformer_overrides"], raw["ilora"], raw["seg"]
    hard = raw.get("seg_hardcoded_in_reference", {})
    vision = VisionConfig(
        hidden_size=cv["hidden_size"],
        intermediate_size=cv["intermediate_size"],
        num_hidden_layers=cv["num_hidden_layers"],
        num_attention_heads=cv["num_attention_heads"],
        image_size=cv["image_size"],
        patch_size=cv["patch_size"],
        hidden_act=cv["hidden_act"],
        layer_norm_eps=cv["layer_norm_eps"],
        projection_dim=cv.get("projection_dim", 32),
        select_layers=tuple(raw["select_layer_list"]),
    )
    beats_fields = set(BeatsConfig.__dataclass_fields__)
    audio = BeatsConfig(**{k: v for k, v in bt.items() if k in beats_fields})

    def qformer(width: int, queries: int) -> QFormerConfig:
        return QFormerConfig(
            hidden_size=qb["hidden_size"],
            num_hidden_layers=qo["num_hidden_layers"],
            num_attention_heads=qb["num_attention_heads"],
            intermediate_size=qb["intermediate_size"],
            layer_norm_eps=qb["layer_norm_eps"],
            num_query_tokens=queries,
            encoder_width=width,
            mlp_depth=raw.get("projector_mlp_depth", 2),
        )

    llm = LLMConfig(
        vocab_size=lm["vocab_size"],
        hidden_size=lm["hidden_size"],
        intermediate_size=lm["intermediate_size"],
        num_hidden_layers=lm["num_hidden_layers"],
        num_attention_heads=lm["num_attention_heads"],
        num_key_value_heads=lm["num_key_value_heads"],
        rms_norm_eps=lm["rms_norm_eps"],
        rope_theta=lm["rope_theta"],
        max_position_embeddings=lm["max_position_embeddings"],
        bos_token_id=lm["bos_token_id"],
        eos_token_id=lm["eos_token_id"],
        pad_token_id=raw.get("pad_token_id_used_for_padding", 2),
    )
    lora = ILoraConfig(
        r=il["r"],
        alpha=float(il["lora_alpha"]),
        dropout=il["lora_dropout"],
        num_heads=il["lora_nums"],
        target_modules=tuple(il["target_modules"]),
    )
    seg = SegConfig(
        prompt_embed_dim=sg["prompt_embed_dim"],
        mlp_dim=hard.get("transformer_mlp_dim", 2048),
        num_heads=hard.get("transformer_num_heads", 8),
        attention_downsample_rate=hard.get("attention_downsample_rate", 2),
        decoder_depth=sg["mask_decoder_transformer_depth"],
        num_queries=sg["avs_query_num"],
        query_generator_layers=sg["query_generator_num_layers"],
        low_res_mask_size=sg["low_res_mask_size"],
        image_size=sg["image_size"],
        scales=sg["image_scale_nums"],
        tokens_per_scale=sg["token_nums_per_scale"],
        num_avss_classes=hard.get("avss_num_classes", 71),
    )
    return CrabConfig(
        name="reference-fixture",
        vision=vision,
        audio=audio,
        vl_qformer=qformer(qo["encoder_width_visual"], raw["visual_query_token_nums"]),
        al_qformer=qformer(qo["encoder_width_audio"], raw["audio_query_token_nums"]),
        llm=llm,
        lora=lora,
        seg=seg,
        compat=CompatConfig(mode="reference"),
    )


PRESETS = {"crab-7b": crab_7b, "crab-tiny": crab_tiny, "crab-micro": crab_micro}


def get_preset(name: str) -> CrabConfig:
    """Return the config of a named preset; raises ``ConfigError`` on an unknown name."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
