"""The model tab's text: which model and weights, sizes, I-LoRA configuration, training card, domain."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from crab_core import (
    RESULTS_GLOB,
    ReportError,
    count_parameters,
    find_results,
    load_results,
    quality_report,
    weights_digest,
)

#: the committed quality results (``benchmarks/crab_tiny_quality.py``) of the repository the app runs from
RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

DOMAIN_TINY = (
    "**Domain.** crab-tiny is trained only on **SynthAV**: procedurally generated 10-second scenes "
    "with up to three objects from ten classes (guitar, violin, flute, drum, piano, trumpet, bell, "
    "dog, car, bird) in three slots (left, middle, right), rendered as simple shapes with synthetic "
    "sounds. It has never seen real-world clips; on real videos its answers are meaningless."
)
DOMAIN_7B = (
    "**Domain.** crab-7b is the official Crab model (LLaMA-2-7B-chat + CLIP ViT-L/14 + BEATs), trained "
    "on the AV-UIE datasets (AVE, AVVP, MUSIC-AVQA, AVSBench, Ref-AVS, VALOR)."
)


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
        return (
            "⚠️ **Random weights.** No trained crab-tiny was found (assets/crab-tiny/model.safetensors), so "
            "this is a randomly initialised crab-tiny: every answer, box and mask is noise. The views still "
            "show how the model routes tokens through its I-LoRA heads."
        )
    return f"Loaded model: **{name}** (trained weights)."


def card_markdown(card: dict) -> str:
    """Training data, recipe and metrics from ``training.json`` (``pipeline.card``)."""
    if not card:
        return "_No training card (training.json) was found beside the weights._"
    parts = []
    for key in ("data", "recipe"):
        if key in card:
            parts.append(f"**{key.capitalize()}**\n\n```json\n{json.dumps(card[key], indent=2)[:4000]}\n```")
    if "metrics" in card:
        parts.append("_Quality: see the table above (built from the committed results files)._")
    rest = {k: v for k, v in card.items() if k not in ("data", "recipe", "metrics")}
    if rest:
        parts.append(f"**Other**\n\n```json\n{json.dumps(rest, indent=2, default=str)[:4000]}\n```")
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=4)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return weights_digest(path)


def loaded_weights_digest(name: str) -> str | None:
    """Digest of the weights the app loaded (``crab-tiny`` or a model folder); None when not a file."""
    from crab_core import TINY_DIR

    path = (TINY_DIR if name == "crab-tiny" else Path(name)) / "model.safetensors"
    try:
        st = path.stat()
    except OSError:
        return None
    return _digest(str(path), st.st_mtime_ns, st.st_size)


def quality_markdown(name: str, trained: bool, results_dir: Path | None = None) -> str:
    """The quality table of ``crab_core.reports`` for the loaded model, or a sentence saying why there
    is none.

    Only results of the same model name are shown and, once results files record the weights'
    digest, only those of the loaded weights.
    """
    if not trained:
        return "_Random weights: no quality results describe this model._"
    try:
        paths = find_results(results_dir or RESULTS_DIR)
    except ReportError:
        paths = []
    if not paths:
        return f"_No quality results here (`benchmarks/results/{RESULTS_GLOB}` is absent in this install)._"
    try:
        results = load_results(paths)
    except ReportError as exc:
        return f"_The quality results could not be read: {exc}_"
    mine = [r for r in results if r.model == name]
    if any(r.weights for r in mine):
        digest = loaded_weights_digest(name)
        mine = [r for r in mine if r.weights is not None and r.weights == digest]
    if not mine:
        return f"_No quality results for {name} (the results files are for other models or weights)._"
    return quality_report(mine)


#: the I-LoRA ablation's report (``benchmarks/ilora_ablation.py``, docs/science.md): crab-tiny geometry
ABLATION_STEM = "ilora_ablation"


def ablation_figure(config_name: str, results_dir: Path | None = None) -> Path | None:
    """The ablation's transfer figure when the served model has the geometry it was run on."""
    path = (results_dir or RESULTS_DIR) / f"{ABLATION_STEM}.png"
    return path if config_name == "crab-tiny" and path.is_file() else None


def ablation_markdown(config_name: str, results_dir: Path | None = None) -> str:
    """One paragraph on the I-LoRA ablation (negative-transfer share per arm), or '' when none applies."""
    path = (results_dir or RESULTS_DIR) / f"{ABLATION_STEM}.json"
    if config_name != "crab-tiny" or not path.is_file():
        return ""
    try:
        res = json.loads(path.read_text())
        shares = "; ".join(
            f"`{arm}`: {s['negative']} of {s['numbers']} numbers negative, {s['positive']} positive"
            for arm, s in res["share"].items()
        )
        seeds = len(res["protocol"]["seeds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"_The I-LoRA ablation results could not be read: {exc}_"
    return (
        "### Does I-LoRA reduce negative transfer?\n\n"
        f"Multi-task arms against single-task adapters of this geometry on SynthAV ({seeds} seeds; "
        f"transfer beyond a 95 % bootstrap interval): {shares}. Figure below; protocol and caveats in "
        "docs/science.md (`python benchmarks/ilora_ablation.py`)."
    )


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
        "### Quality",
        quality_markdown(pipeline.name, pipeline.trained),
        "### Training",
        card_markdown(pipeline.card),
    ]
    science = ablation_markdown(cfg.name) if pipeline.trained else ""
    return "\n\n".join([*lines, science] if science else lines)
