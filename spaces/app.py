"""Hugging Face Space entry: loads the model on CPU at import, moves it to the GPU inside handlers.

``spaces.GPU`` requests a ZeroGPU slot for each model call; elsewhere (no ``spaces`` package or no
ZeroGPU) it is a no-op. Model choice comes from the Space variables (see README.md).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for root in (HERE, HERE.parent):  # the Space root, or spaces/ inside the repository
    if (root / "crab_core").is_dir():
        sys.path.insert(0, str(root))
        break

import torch  # noqa: E402

from app.cli import launch, load_pipeline, make_demo, parse_args, private_temp_dir  # noqa: E402
from app.engine import Engine  # noqa: E402

log = logging.getLogger("crab_studio.space")

try:
    import spaces

    gpu = spaces.GPU(duration=120)
except Exception:  # noqa: BLE001 - not on a Space: a no-op decorator

    def gpu(fn):
        return fn


def _args():
    argv = ["--model", os.environ.get("CRAB_MODEL", "crab-tiny"), "--device", "cpu", "--host", "0.0.0.0"]
    for flag, var in (("--llm", "CRAB_LLM"), ("--clip", "CRAB_CLIP"), ("--beats", "CRAB_BEATS")):
        if os.environ.get(var):
            argv += [flag, os.environ[var]]
    for f in filter(None, os.environ.get("CRAB_WEIGHTS", "").split(",")):
        argv += ["--crab", f.strip()]
    return parse_args(argv)


def _on_gpu(method):
    """Run an engine method with the model on the GPU when one is granted (back to CPU afterwards)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if not torch.cuda.is_available():
            return method(self, *args, **kwargs)
        self.pipeline.model.to("cuda")
        self.pipeline._cache.clear()  # cached features live on the device they were encoded on
        try:
            return method(self, *args, **kwargs)
        finally:
            self.pipeline.model.to("cpu")
            self.pipeline._cache.clear()

    return gpu(wrapper)


for _name in ("run", "attention", "attribution"):
    setattr(Engine, _name, _on_gpu(getattr(Engine, _name)))

logging.basicConfig(level=logging.INFO)
private_temp_dir()
ARGS = _args()
PIPELINE = load_pipeline(ARGS)  # weights loaded on CPU at import
demo = make_demo(PIPELINE, ARGS.max_duration, ARGS.concurrency, ARGS.queue_size)

if __name__ == "__main__":
    launch(demo, host=ARGS.host, port=int(os.environ.get("PORT", 7860)), max_upload_mb=ARGS.max_upload_mb)
