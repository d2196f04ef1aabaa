"""Reading a reference-fixture folder (README format of ``reference-fixtures/``).

A fixture folder holds ``config.json`` (tiny hyper-parameters), ``weights.safetensors`` (the
reference's own PeftModel key names) and one sub-folder per component with ``inputs`` /
``outputs`` safetensors. This module turns ``config.json`` into a :class:`CrabConfig` and loads
the weights through the same conversion path as official checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import (
    BeatsConfig,
    CompatConfig,
    CrabConfig,
    ILoraConfig,
    LLMConfig,
    QFormerConfig,
    SegConfig,
    VisionConfig,
)
from ..errors import CheckpointError
from .convert import LoadReport, load_mapped, raise_on_errors, reference_to_ours
from .io import read_state_dict


def read_fixture_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: fixture config.json not found")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read fixture config ({exc})") from exc


def config_from_fixture(raw: dict) -> CrabConfig:
    """Build a reference-mode :class:`CrabConfig` from a fixture ``config.json``."""
    try:
        return _config_from_fixture(raw)
    except KeyError as exc:
        raise CheckpointError(f"fixture config.json lacks {exc}") from exc


def _config_from_fixture(raw: dict) -> CrabConfig:
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


def load_fixture_model(folder: Path, attn_implementation: str = "sdpa"):
    """Build the fixture's model and load ``weights.safetensors`` via :func:`reference_to_ours`.

    Returns:
        ``(model, config, raw_config, report)``; raises :class:`CheckpointError` on any unexpected,
        shape-mismatched or missing key (the fixture file is a complete state dict).
    """
    from ..model.builder import build_model

    folder = Path(folder)
    raw = read_fixture_config(folder)
    cfg = config_from_fixture(raw)
    weights = folder / raw.get("weights_file", {}).get("path", "weights.safetensors")
    model = build_model(cfg, attn_implementation=attn_implementation)
    sd = read_state_dict(weights, float32=True)
    ours, dropped, unexpected = reference_to_ours(sd)
    report = LoadReport(sources=[str(weights)], dropped=dropped, unexpected=list(unexpected))
    load_mapped(model, ours, report)
    raise_on_errors(report, str(weights))
    if report.missing:
        raise CheckpointError(
            f"{weights}: {len(report.missing)} model tensors not in the file, e.g. {report.missing[:3]}"
        )
    model.eval()
    return model, cfg, raw, report


def load_io(folder: Path, component: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inputs and outputs of one component sub-folder (float tensors as float32)."""
    sub = Path(folder) / component
    return (
        read_state_dict(sub / "inputs.safetensors", float32=True),
        read_state_dict(sub / "outputs.safetensors", float32=True),
    )


def load_meta(folder: Path, component: str) -> dict:
    path = Path(folder) / component / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}
