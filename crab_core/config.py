"""Typed, validated, JSON-serialisable configuration for every Crab component.

Each component config is a frozen dataclass; builders turn them into flat constructor
arguments, so low-level modules never see a config object. ``CrabConfig`` nests them and
adds only glue (special tokens, compatibility switches).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Added to the LLM vocabulary in this order (crab-reference.md section 1.1).
SPECIAL_TOKENS = (
    "<image>",
    "<image_start>",
    "<image_end>",
    "<video>",
    "<video_start>",
    "<video_end>",
    "<audio>",
    "<audio_start>",
    "<audio_end>",
    "<mask_start>",
    "<mask_end>",
)
PLACEHOLDERS = ("<image>", "<video>", "<audio>")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class VisionConfig:
    """CLIP ViT vision tower; ``select_layers`` index ``hidden_states`` (0 = embeddings)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768
    select_layers: tuple[int, ...] = (14, 22, 23)

    def __post_init__(self) -> None:
        _check(self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size")
        _check(len(self.select_layers) == 3, "select_layers needs 3 entries (2 seg scales + LLM layer)")
        _check(
            all(0 <= i <= self.num_hidden_layers for i in self.select_layers), "select_layers out of range"
        )

    @property
    def patches_per_frame(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class BeatsConfig:
    """BEATs audio encoder (iter3+ geometry by default)."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = True
    predictor_class: int = 527

    def __post_init__(self) -> None:
        _check(self.encoder_embed_dim % self.encoder_attention_heads == 0, "BEATs heads must divide dim")


@dataclass(frozen=True)
class QFormerConfig:
    """BLIP-2 Q-Former (query-only path) followed by the projector MLP."""

    hidden_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    num_query_tokens: int = 32
    encoder_width: int = 1024
    mlp_depth: int = 2
    #: Learned index embedding added to the tokens of frame / audio segment ``t`` (``t < unit_embeddings``).
    #: 0 (the reference, crab-7b) disables it; crab-tiny, whose small scratch LLM has no other cheap
    #: way to tell which second a media token belongs to, uses it (docs/deviations.md).
    unit_embeddings: int = 0
    #: ``G`` > 0: the single-frame image input becomes ``G*G`` grid-cell tokens instead of the
    #: Q-Former's queries (crab-tiny only; 0 = the reference; ``QFormerProjector``, docs/deviations.md).
    image_grid: int = 0

    def __post_init__(self) -> None:
        _check(self.hidden_size % self.num_attention_heads == 0, "Q-Former heads must divide hidden")
        _check(self.mlp_depth >= 1, "mlp_depth >= 1")
        _check(self.unit_embeddings >= 0, "unit_embeddings >= 0")
        _check(self.image_grid >= 0, "image_grid >= 0")


@dataclass(frozen=True)
class LLMConfig:
    """LLaMA-2 decoder geometry."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 2

    def __post_init__(self) -> None:
        _check(self.hidden_size % self.num_attention_heads == 0, "LLM heads must divide hidden")


@dataclass(frozen=True)
class ILoraConfig:
    """Interaction-aware LoRA: shared A (r x in), ``num_heads`` B heads, per-token softmax router."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    num_heads: int = 3
    target_modules: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        _check(self.r > 0 and self.num_heads > 0, "r and num_heads must be positive")
        _check(0.0 <= self.dropout < 1.0, "dropout in [0, 1)")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


@dataclass(frozen=True)
class SegConfig:
    """SAM-style multi-scale mask decoder.

    The reference hard-wires ``prompt_embed_dim=256``, ``mlp_dim=2048`` and 8 heads; they are
    fields here so crab-tiny can be small. The official geometry keeps the reference values.
    """

    prompt_embed_dim: int = 256
    mlp_dim: int = 2048
    num_heads: int = 8
    attention_downsample_rate: int = 2
    decoder_depth: int = 2
    num_queries: int = 300
    query_generator_layers: int = 2
    low_res_mask_size: int = 112
    image_size: int = 224
    scales: int = 2
    tokens_per_scale: int = 3
    num_avss_classes: int = 71
    #: ``"reference"`` (the reference's query decoder; official weights) or ``"prompt"`` (our
    #: training: seg tokens as two-way-transformer tokens, frame stem; crab_core.model.seg.prompt_decoder)
    decoder: str = "reference"
    #: pixel-embedding width of the prompt decoder
    pixel_dim: int = 32

    def __post_init__(self) -> None:
        _check(self.prompt_embed_dim % self.num_heads == 0, "seg heads must divide prompt_embed_dim")
        _check(self.decoder in ("reference", "prompt"), "seg.decoder must be 'reference' or 'prompt'")
        _check(self.pixel_dim > 0, "seg.pixel_dim must be positive")
        _check(self.scales == 2, "the decoder has exactly two scales")

    @property
    def num_seg_tokens(self) -> int:
        return self.scales * self.tokens_per_scale


@dataclass(frozen=True)
class CompatConfig:
    """Switches between the reference's function (official weights) and the corrected one.

    ``reference`` reproduces what released checkpoints were trained with (crab-reference.md
    section 8); ``corrected`` is what our own training uses. See docs/deviations.md.
    """

    mode: Literal["reference", "corrected"] = "corrected"

    @property
    def chain_query_generator(self) -> bool:
        """Feed each query-generator layer the previous layer's output (bug 10 fixed)."""
        return self.mode == "corrected"

    @property
    def learnable_fusion(self) -> bool:
        """Register the seg-token / scale fusion scalars as parameters (bug 9 fixed)."""
        return self.mode == "corrected"


@dataclass(frozen=True)
class CrabConfig:
    """Complete model description. ``base_vocab_size`` excludes the 17 added tokens."""

    name: str = "crab-7b"
    vision: VisionConfig = field(default_factory=VisionConfig)
    audio: BeatsConfig = field(default_factory=BeatsConfig)
    vl_qformer: QFormerConfig = field(default_factory=QFormerConfig)
    al_qformer: QFormerConfig = field(default_factory=lambda: QFormerConfig(encoder_width=768))
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: ILoraConfig = field(default_factory=ILoraConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)

    def __post_init__(self) -> None:
        _check(
            self.vl_qformer.encoder_width == self.vision.hidden_size,
            "vl_qformer.encoder_width must equal vision.hidden_size",
        )
        _check(
            self.al_qformer.encoder_width == self.audio.encoder_embed_dim,
            "al_qformer.encoder_width must equal audio.encoder_embed_dim",
        )
        _check(self.seg.image_size == self.vision.image_size, "seg.image_size must equal vision.image_size")

    # -- special tokens ---------------------------------------------------------------
    @property
    def base_vocab_size(self) -> int:
        return self.llm.vocab_size

    @property
    def added_tokens(self) -> tuple[str, ...]:
        return SPECIAL_TOKENS + tuple(f"<mask_{i}>" for i in range(self.seg.num_seg_tokens))

    @property
    def full_vocab_size(self) -> int:
        return self.base_vocab_size + len(self.added_tokens)

    @property
    def token_ids(self) -> dict[str, int]:
        """Ids of the added tokens, by enumeration after the base vocabulary (as the reference)."""
        return {tok: self.base_vocab_size + i for i, tok in enumerate(self.added_tokens)}

    @property
    def mask_token_ids(self) -> tuple[int, ...]:
        ids = self.token_ids
        return tuple(ids[f"<mask_{i}>"] for i in range(self.seg.num_seg_tokens))

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrabConfig:
        sub = {
            "vision": VisionConfig,
            "audio": BeatsConfig,
            "vl_qformer": QFormerConfig,
            "al_qformer": QFormerConfig,
            "llm": LLMConfig,
            "lora": ILoraConfig,
            "seg": SegConfig,
            "compat": CompatConfig,
        }
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown CrabConfig fields: {sorted(unknown)}")
        for key, value in data.items():
            if key in sub:
                kwargs[key] = _sub_from_dict(sub[key], value, key)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> CrabConfig:
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        try:
            text = p.read_text() if p is not None else str(path_or_text)
            return cls.from_dict(json.loads(text))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path_or_text}: {exc}") from exc

    def replace(self, **changes: Any) -> CrabConfig:
        return dataclasses.replace(self, **changes)


#: Fields that older ``config.json`` files carry but the model config no longer has: dropped on load.
#: ``seg.avss_balance`` (the class-balanced AVSS loss share) is a training option: ``Phase.avss_balance``.
RETIRED_FIELDS: dict[str, tuple[str, ...]] = {"seg": ("avss_balance",)}


def _sub_from_dict(klass: type, value: Any, name: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"config section {name!r} must be an object")
    retired = [k for k in RETIRED_FIELDS.get(name, ()) if k in value]
    if retired:
        log.debug("config section %s: ignoring retired field(s) %s", name, retired)
        value = {k: v for k, v in value.items() if k not in retired}
    fields = {f.name: f for f in dataclasses.fields(klass)}
    unknown = set(value) - set(fields)
    if unknown:
        raise ConfigError(f"unknown fields in {name}: {sorted(unknown)}")
    conv = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return klass(**conv)
    except TypeError as exc:
        raise ConfigError(f"bad config section {name}: {exc}") from exc
