"""Interpretability: what each I-LoRA head does (routing capture, head ablation / forcing,
attention maps, IG attributions, dataset head profiles, plotly figure builders).

Plain data out (dataclasses + numpy); no gradio. Submodules import torch-heavy code lazily
through their own imports, so ``import crab_core.interpret`` stays light.
"""

__all__ = ["ablation", "attention", "attribution", "capture", "cli", "figures", "inputs", "profile", "sanity"]
