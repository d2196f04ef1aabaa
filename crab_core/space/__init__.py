"""Hugging Face Space packaging: ``python -m crab_core space build --out DIR [--push REPO_ID]``.

:mod:`.build` writes a self-contained Space folder (code, assets, front matter, pinned requirements,
LFS rules); :mod:`.push` uploads it with huggingface_hub. Nothing here imports gradio or torch.
"""
