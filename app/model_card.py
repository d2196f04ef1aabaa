"""The model tab's text: which model and weights, sizes, I-LoRA configuration, training card, domain."""

from __future__ import annotations

import json

from crab_core.model.builder import count_parameters

DOMAIN_TINY = ("**Domain.** crab-tiny is trained only on **SynthAV**: procedurally generated 10-second scenes "
               "with up to three objects from ten classes (guitar, violin, flute, drum, piano, trumpet, bell, "
               "dog, car, bird) in three slots (left, middle, right), rendered as simple shapes with synthetic "
               "sounds. It has never seen real-world clips; on real videos its answers are meaningless.")
DOMAIN_7B = ("**Domain.** crab-7b is the official Crab model (LLaMA-2-7B-chat + CLIP ViT-L/14 + BEATs), trained "
             "on the AV-UIE datasets (AVE, AVVP, MUSIC-AVQA, AVSBench, Ref-AVS, VALOR).")


def _fmt(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,}"


def parameter_table(model) -> str:
    """Markdown table of parameter counts per component."""
    counts = count_parameters(model)
    rows = [f"| {k} | {_fmt(v)} |" for k, v in counts.items()]
    return "| component | parameters |\n|---|---|\n" + "\n".join(rows)


def weights_statement(name: str, trained: bool) -> str:
    """A plain sentence on which weights are loaded."""
    if not trained:
        return ("⚠️ **Random weights.** No trained crab-tiny was found (assets/crab-tiny/model.safetensors), so "
                "this is a randomly initialised crab-tiny: every answer, box and mask is noise. The views still "
                "show how the model routes tokens through its I-LoRA heads.")
    return f"Loaded model: **{name}** (trained weights)."


def card_markdown(card: dict) -> str:
    """Training data, recipe and metrics from ``training.json`` (``pipeline.card``)."""
    if not card:
        return "_No training card (training.json) was found beside the weights._"
    parts = []
    for key in ("data", "recipe", "metrics"):
        if key in card:
            parts.append(f"**{key.capitalize()}**\n\n```json\n{json.dumps(card[key], indent=2)[:4000]}\n```")
    rest = {k: v for k, v in card.items() if k not in ("data", "recipe", "metrics")}
    if rest:
        parts.append(f"**Other**\n\n```json\n{json.dumps(rest, indent=2, default=str)[:4000]}\n```")
    return "\n\n".join(parts)


def model_markdown(pipeline) -> str:
    """The whole model tab."""
    cfg = pipeline.model.config
    lora = cfg.lora
    lines = [
        f"## {pipeline.name}",
        weights_statement(pipeline.name, pipeline.trained),
        DOMAIN_TINY if cfg.name == "crab-tiny" else DOMAIN_7B,
        "### Parameters",
        parameter_table(pipeline.model),
        "### I-LoRA",
        f"{lora.num_heads} heads per adapted projection, rank r = {lora.r}, alpha = {lora.alpha}, "
        f"dropout = {lora.dropout}; adapted projections: {', '.join(lora.target_modules)} in each of the "
        f"{cfg.llm.num_hidden_layers} LLM layers. Each token's router mixes the heads with a softmax "
        "(the *router weights* shown in the views).",
        "### Training",
        card_markdown(pipeline.card),
    ]
    return "\n\n".join(lines)
