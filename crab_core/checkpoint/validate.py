"""Validation of a model folder *before* anything is allocated.

A hostile or broken ``config.json`` (a hidden size of 20000, 10^6 layers, a vocabulary of 10^9,
negative or zero sizes) used to be built first and fail later, after gigabytes were allocated.
Here the folder is checked in order of cost, each step raising :class:`CheckpointError` with one
line naming the file and the problem:

1. :func:`read_config`: the raw JSON (size-capped) has the right types, every size is positive and
   within :data:`BOUNDS` (comfortably above crab-7b's geometry), and the divisibility rules hold.
2. :func:`check_weights`: the safetensors *header* only (no tensor is read) is compared with the
   config: the weights file must be at least as large as the config's parameter lower bound
   (:func:`min_parameter_count`), and every tensor's shape must equal the shape the config implies
   (the model is built on the ``meta`` device, which allocates nothing).
3. :func:`read_card`: ``training.json`` is a JSON object (size-capped).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from ..config import CrabConfig
from ..errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024**2
MAX_CARD_BYTES = 16 * 1024**2

#: Inclusive bounds per integer field name (any section). crab-7b's largest values are in comments.
BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 16384),  # LLaMA-2-7B 4096
    "encoder_embed_dim": (1, 16384),  # BEATs 768
    "embed_dim": (1, 16384),  # BEATs 512
    "prompt_embed_dim": (1, 16384),  # SAM 256
    "encoder_width": (1, 16384),  # CLIP 1024
    "projection_dim": (1, 16384),  # CLIP 768
    "intermediate_size": (1, 65536),  # LLaMA 11008
    "encoder_ffn_embed_dim": (1, 65536),  # BEATs 3072
    "mlp_dim": (1, 65536),  # SAM 2048
    "num_hidden_layers": (1, 256),  # LLaMA 32
    "encoder_layers": (1, 256),  # BEATs 12
    "num_attention_heads": (1, 256),  # 32
    "num_key_value_heads": (1, 256),
    "encoder_attention_heads": (1, 256),
    "num_heads": (1, 256),  # I-LoRA 3, seg 8
    "vocab_size": (1, 1_000_000),  # LLaMA 32000
    "image_size": (1, 2048),  # 224
    "patch_size": (1, 2048),  # 14
    "input_patch_size": (1, 1024),  # 16
    "max_position_embeddings": (1, 1 << 20),  # 4096
    "num_query_tokens": (1, 4096),  # 32
    "unit_embeddings": (0, 4096),
    "mlp_depth": (1, 16),
    "r": (1, 4096),  # 8
    "num_queries": (1, 4096),  # 300
    "query_generator_layers": (1, 64),
    "decoder_depth": (1, 64),
    "low_res_mask_size": (1, 2048),  # 112
    "tokens_per_scale": (1, 64),
    "scales": (1, 16),
    "num_avss_classes": (1, 10000),  # 71
    "attention_downsample_rate": (1, 64),
    "conv_pos": (1, 1024),  # 128
    "conv_pos_groups": (1, 1024),  # 16
    "num_buckets": (1, 100_000),  # 320
    "max_distance": (1, 1_000_000),  # 800
    "predictor_class": (1, 100_000),  # 527
    "bos_token_id": (0, 1_000_000),
    "eos_token_id": (0, 1_000_000),
    "pad_token_id": (0, 1_000_000),
}
#: Any other integer field (one added later) must still be a non-negative, modest number.
DEFAULT_BOUND = (0, 1_000_000)
MAX_SEQUENCE_LEN = 64


def _sections() -> dict[str, type]:
    """Config section name -> its dataclass (read from :class:`CrabConfig` itself)."""
    out = {}
    for f in dataclasses.fields(CrabConfig):
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = type(f.default_factory())  # type: ignore[misc]
    return out


def _defaults(klass: type) -> dict[str, Any]:
    vals = {}
    for f in dataclasses.fields(klass):
        if f.default is not dataclasses.MISSING:
            vals[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            vals[f.name] = f.default_factory()  # type: ignore[misc]
    return vals


def check_config_values(data: dict, where: str = "config.json") -> None:
    """Check types and bounds of every known numeric field of a raw config dict.

    Unknown fields are left to :meth:`CrabConfig.from_dict` (which names them).

    Raises:
        CheckpointError: ``"<where>: llm.hidden_size = 20000 is outside [1, 16384]"`` and the like.
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: must hold a JSON object, got {type(data).__name__}")
    for section, klass in _sections().items():
        if section not in data:
            continue
        values = data[section]
        if not isinstance(values, dict):
            raise CheckpointError(
                f"{where}: section {section!r} must be an object, got {type(values).__name__}"
            )
        defaults = _defaults(klass)
        for name, value in values.items():
            if name in defaults:
                _check_value(
                    f"{section}.{name}", value, defaults[name], BOUNDS.get(name, DEFAULT_BOUND), where
                )


def _check_value(name: str, value: Any, default: Any, bound: tuple[int, int], where: str) -> None:
    def bad(expect: str) -> CheckpointError:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        return CheckpointError(f"{where}: {name} = {shown} {expect}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("must be true or false")
    elif isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("must be an integer")
        lo, hi = bound
        if not lo <= value <= hi:
            raise bad(f"is outside [{lo}, {hi}]")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("must be a finite number")
        if abs(value) > 1e9:
            raise bad("is implausibly large")
    elif isinstance(default, str):
        if not isinstance(value, str) or len(value) > 200:
            raise bad("must be a short string")
    elif isinstance(default, tuple):
        if not isinstance(value, list) or len(value) > MAX_SEQUENCE_LEN:
            raise bad(f"must be a list of at most {MAX_SEQUENCE_LEN} entries")
        for i, item in enumerate(value):
            item_default = default[0] if default else item
            _check_value(f"{name}[{i}]", item, item_default, DEFAULT_BOUND, where)


def check_geometry(cfg: CrabConfig, where: str = "config.json") -> None:
    """Divisibility and cross-field rules the model classes rely on (beyond ``CrabConfig``'s own)."""
    rules = [
        (
            cfg.vision.hidden_size % cfg.vision.num_attention_heads == 0,
            f"vision.hidden_size {cfg.vision.hidden_size} is not divisible by vision.num_attention_heads "
            f"{cfg.vision.num_attention_heads}",
        ),
        (
            cfg.vision.patch_size <= cfg.vision.image_size,
            f"vision.patch_size {cfg.vision.patch_size} exceeds vision.image_size {cfg.vision.image_size}",
        ),
        (
            cfg.llm.num_attention_heads % cfg.llm.num_key_value_heads == 0,
            f"llm.num_attention_heads {cfg.llm.num_attention_heads} is not a multiple of "
            "llm.num_key_value_heads "
            f"{cfg.llm.num_key_value_heads}",
        ),
        (
            cfg.audio.encoder_embed_dim % cfg.audio.conv_pos_groups == 0,
            f"audio.encoder_embed_dim {cfg.audio.encoder_embed_dim} is not divisible by "
            "audio.conv_pos_groups "
            f"{cfg.audio.conv_pos_groups}",
        ),
    ]
    ids = {
        "bos_token_id": cfg.llm.bos_token_id,
        "eos_token_id": cfg.llm.eos_token_id,
        "pad_token_id": cfg.llm.pad_token_id,
    }
    rules += [
        (v < cfg.llm.vocab_size, f"llm.{k} {v} is not below llm.vocab_size {cfg.llm.vocab_size}")
        for k, v in ids.items()
    ]
    for ok, msg in rules:
        if not ok:
            raise CheckpointError(f"{where}: {msg}")


def read_config(path: str | Path) -> CrabConfig:
    """Read and validate a model folder's ``config.json`` (nothing is built).

    Raises:
        CheckpointError: missing, huge, not UTF-8 / JSON, wrong types, sizes out of bounds,
            inconsistent geometry; the message names the file and the field.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: config file not found")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(
            f"{p}: {p.stat().st_size} bytes, larger than a config can be ({MAX_CONFIG_BYTES})"
        )
    data = _read_json(p)
    check_config_values(data, str(p))
    try:
        cfg = CrabConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(f"{p}: {exc}") from exc
    check_geometry(cfg, str(p))
    return cfg


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{p}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit integer, or nesting 10^5 deep
        raise CheckpointError(f"{p}: unreadable JSON ({type(exc).__name__}: {str(exc)[:120]})") from exc
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot be read ({exc.strerror or exc})") from exc


def read_card(path: str | Path) -> dict:
    """Read a ``training.json`` card: a JSON object whose ``recipe`` / ``data`` / ``metrics`` are objects.

    Raises:
        CheckpointError: huge, not UTF-8 / JSON, or of the wrong shape; the message names the file.
    """
    p = Path(path)
    if p.stat().st_size > MAX_CARD_BYTES:
        raise CheckpointError(f"{p}: {p.stat().st_size} bytes, larger than a training card can be")
    card = _read_json(p)
    if not isinstance(card, dict):
        raise CheckpointError(f"{p}: must hold a JSON object, got {type(card).__name__}")
    for key in ("recipe", "data", "metrics"):
        if key in card and not isinstance(card[key], dict):
            raise CheckpointError(f"{p}: {key!r} must be an object, got {type(card[key]).__name__}")
    return card


# --------------------------------------------------------------------------- weights
def read_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{key: (shape, dtype)}`` from a safetensors header; no tensor data is read.

    Raises:
        CheckpointError: missing / not a valid safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: weights file not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            out = {}
            for key in f.keys():
                sl = f.get_slice(key)
                out[key] = (tuple(int(d) for d in sl.get_shape()), str(sl.get_dtype()))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a valid safetensors file ({str(exc)[:200]})") from exc
    return out


_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def min_parameter_count(cfg: CrabConfig) -> int:
    """A lower bound on the model's parameter count: only the large matrices of each tower.

    LLM: one ``(full_vocab, h)`` embedding plus per layer q/o ``h x h``, k/v ``h x kv_dim``, three
    ``h x intermediate`` MLP matrices; CLIP and BEATs: per layer four ``d x d`` attention and two
    ``d x ffn`` matrices; Q-Formers: per layer self / cross attention and FFN. LoRA, norms, biases and
    the mask decoder are left out, so a real model always holds at least this many.
    """
    llm, vis, aud = cfg.llm, cfg.vision, cfg.audio
    h = llm.hidden_size
    kv = h // llm.num_attention_heads * llm.num_key_value_heads
    n = cfg.full_vocab_size * h + llm.num_hidden_layers * (
        2 * h * h + 2 * h * kv + 3 * h * llm.intermediate_size
    )
    n += vis.num_hidden_layers * (4 * vis.hidden_size**2 + 2 * vis.hidden_size * vis.intermediate_size)
    n += aud.encoder_layers * (
        4 * aud.encoder_embed_dim**2 + 2 * aud.encoder_embed_dim * aud.encoder_ffn_embed_dim
    )
    for q in (cfg.vl_qformer, cfg.al_qformer):
        d = q.hidden_size
        n += q.num_hidden_layers * (6 * d * d + 2 * d * q.encoder_width + 2 * d * q.intermediate_size)
    return n


def check_weights(cfg: CrabConfig, weights: str | Path, where: str = "config.json") -> dict:
    """Compare a config with its safetensors weights before any real allocation.

    Args:
        cfg: the validated config (:func:`read_config`).
        weights: the ``model.safetensors`` file.
        where: the config file's name for messages.

    Returns:
        the header (:func:`read_header`).

    Raises:
        CheckpointError: the config describes more parameters than the file can hold, or a tensor's
            shape differs from the config's (the message names the key, expected and found shapes).
    """
    p = Path(weights)
    header = read_header(p)
    if not header:
        raise CheckpointError(f"{p}: holds no tensors")
    elem = min(_DTYPE_BYTES.get(dt, 1) for _, dt in header.values())
    need = min_parameter_count(cfg)
    size = p.stat().st_size
    if need * elem > size:
        raise CheckpointError(
            f"{where}: describes a model of at least {need / 1e6:.1f} M parameters "
            f"({need * elem / 1e6:.1f} MB), "
            f"but {p.name} holds only {size / 1e6:.1f} MB; the config does not belong to these weights"
        )
    expected = _expected_shapes(cfg, with_seg=any(k.startswith("seg_module.") for k in header), where=where)
    bad = [
        (k, expected[k], shape) for k, (shape, _) in header.items() if k in expected and expected[k] != shape
    ]
    if bad:
        k, exp, found = bad[0]
        raise CheckpointError(
            f"{p}: {len(bad)} tensor(s) do not match {Path(where).name}, e.g. {k}: config implies "
            f"{list(exp)}, file holds {list(found)}"
        )
    return header


def _expected_shapes(cfg: CrabConfig, with_seg: bool, where: str) -> dict[str, tuple[int, ...]]:
    """Shapes of every state-dict entry of the model ``cfg`` describes (built on ``meta``: no memory)."""
    from ..model.builder import build_model

    try:
        model = build_model(cfg, with_seg=with_seg, device="meta", seed=None)
    except (ValueError, TypeError, RuntimeError, ArithmeticError, AssertionError, ConfigError) as exc:
        raise CheckpointError(f"{where}: describes a model that cannot be built ({str(exc)[:200]})") from exc
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
