"""Hugging Face Space entry of Crab Studio (``python -m crab_core space build`` writes it as app.py).

It follows ZeroGPU's documented pattern:

1. ``spaces`` is imported first: on a ZeroGPU Space it patches torch's CUDA before torch loads.
2. The weights are loaded once, at start-up, and placed on CUDA at import (:func:`place`); ZeroGPU
   keeps them packed and hands them to each GPU worker, so no call copies the model between CPU and
   GPU or flushes the clip cache.
3. Every handler part that runs the model (``/run``, ``/intervene``, the head grid ``/compare``,
   ``/attention``, ``/attribution``) goes through ``spaces.GPU`` with a duration sized for the call
   (:mod:`app.gpu`), applied when the demo is built. Nothing of the engine is patched and the model
   never moves after start-up; weight switches (AVS / AVSS) happen under the engine's lock.

``spaces.GPU`` does nothing off ZeroGPU: the same file serves a CPU Space, a GPU Space or a laptop.
Settings come from ``space.json`` beside this file (written by the builder) and the Space variables
``CRAB_MODEL``, ``CRAB_LLM``, ``CRAB_CLIP``, ``CRAB_BEATS``, ``CRAB_WEIGHTS`` (comma-separated) and
``CRAB_DEVICE``, which win. crab-7b needs the secret ``HF_TOKEN`` (LLaMA-2 is gated).
"""

from __future__ import annotations

try:  # first, before torch (see above)
    import spaces
except ImportError:  # not installed: run without ZeroGPU
    spaces = None

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _root in (HERE, HERE.parent):  # the Space folder, or spaces/ inside the repository
    if (_root / "crab_core").is_dir():
        sys.path.insert(0, str(_root))
        break

import torch  # noqa: E402

from app.cli import launch, make_demo, private_temp_dir  # noqa: E402
from crab_core.errors import ConfigError  # noqa: E402

log = logging.getLogger("crab_studio.space")
SETTINGS_FILE = "space.json"
MODELS = ("crab-tiny", "crab-7b")


@dataclass
class SpaceSettings:
    """What the Space serves.

    Attributes:
        model: ``crab-tiny`` or ``crab-7b``. llm / clip / beats / crab: crab-7b sources (see
            :class:`crab_core.checkpoint.hub.OfficialSources`). device: ``cuda`` / ``cpu``; None picks
            ``cuda`` on ZeroGPU or when a GPU is visible.
    """

    model: str = "crab-tiny"
    llm: str | None = None
    clip: str | None = None
    beats: str | None = None
    crab: tuple[str, ...] = ()
    device: str | None = None
    max_duration: float = 60.0
    max_upload_mb: float = 50.0


def read_settings(folder: Path = HERE, env=os.environ) -> SpaceSettings:
    """``space.json`` in ``folder`` (when present) with the ``CRAB_*`` variables of ``env`` on top.

    Raises:
        ConfigError: an unreadable file, an unknown key or model.
    """
    raw: dict = {}
    path = Path(folder) / SETTINGS_FILE
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the Space settings ({exc})") from None
    for key, var in (("model", "CRAB_MODEL"), ("llm", "CRAB_LLM"), ("clip", "CRAB_CLIP")):
        raw[key] = env.get(var) or raw.get(key)
    for key, var in (("beats", "CRAB_BEATS"), ("device", "CRAB_DEVICE")):
        raw[key] = env.get(var) or raw.get(key)
    if env.get("CRAB_WEIGHTS"):
        raw["crab"] = [f.strip() for f in env["CRAB_WEIGHTS"].split(",") if f.strip()]
    known = {f.name for f in dataclasses.fields(SpaceSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown settings {unknown} (known: {sorted(known)})")
    settings = SpaceSettings(**{k: v for k, v in raw.items() if v is not None})
    settings.crab = tuple(_local(f, folder) for f in settings.crab)
    settings.beats = _local(settings.beats, folder)
    if settings.model not in MODELS:
        raise ConfigError(f"CRAB_MODEL must be one of {', '.join(MODELS)} (got {settings.model!r})")
    return settings


def _local(source: str | None, folder: Path) -> str | None:
    """A file bundled into the Space (``weights/...``) as an absolute path; other sources unchanged."""
    if (
        source
        and not source.startswith(("http://", "https://", "file://"))
        and (Path(folder) / source).is_file()
    ):
        return str(Path(folder) / source)
    return source


def zero_gpu() -> bool:
    """Whether this process runs on ZeroGPU (the ``spaces`` package says so)."""
    config = getattr(getattr(spaces, "config", None), "Config", None)
    return bool(getattr(config, "zero_gpu", False))


def choose_device(settings: SpaceSettings) -> str:
    """``settings.device``, else ``cuda`` on ZeroGPU (its patched torch reports CUDA at import) or
    with a visible GPU, else ``cpu``."""
    if settings.device:
        return settings.device
    return "cuda" if zero_gpu() or torch.cuda.is_available() else "cpu"


def load(settings: SpaceSettings, device: str):
    """The pipeline, loaded once. On ZeroGPU it is read on the CPU (bf16 for crab-7b) and placed on
    CUDA by :func:`place`; elsewhere it is built on ``device`` directly."""
    from crab_core.pipeline import CrabPipeline

    home = "cpu" if zero_gpu() else device
    if settings.model == "crab-tiny":
        return CrabPipeline.load("crab-tiny", device=home, max_duration_s=settings.max_duration)
    from crab_core.checkpoint.hub import (
        DEFAULT_CLIP,
        DEFAULT_LLM,
        OFFICIAL_CRAB_FILES,
        OfficialSources,
    )
    from crab_core.pipeline_official import load_crab_7b_pipeline

    src = OfficialSources(
        llm=settings.llm or DEFAULT_LLM,
        clip=settings.clip or DEFAULT_CLIP,
        beats=settings.beats,
        crab=settings.crab or OFFICIAL_CRAB_FILES,
    )
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return load_crab_7b_pipeline(src, device=home, dtype=dtype, max_duration_s=settings.max_duration)


def place(pipeline, device: str):
    """Move the model (and its per-task weight sets) to ``device`` once, at import."""
    if str(next(pipeline.model.parameters()).device) != device:
        pipeline.model.to(device)
        if pipeline.task_weights is not None:
            pipeline.task_weights.to(device)
    return pipeline


def gpu_wrapper(pipeline):
    """``spaces.GPU`` with per-call durations (:func:`app.gpu.zerogpu_wrapper`), or None without
    ``spaces``."""
    from app.gpu import zerogpu_wrapper

    if spaces is None:
        return None
    return zerogpu_wrapper(spaces.GPU, int(pipeline.model.config.lora.num_heads))


def server_address(env=os.environ) -> tuple[str, int]:
    """``0.0.0.0`` on a Space (``SPACE_ID`` set), else ``GRADIO_SERVER_NAME`` or loopback; the port
    from ``GRADIO_SERVER_PORT`` / ``PORT`` (default 7860)."""
    host = "0.0.0.0" if env.get("SPACE_ID") else env.get("GRADIO_SERVER_NAME", "127.0.0.1")
    return host, int(env.get("GRADIO_SERVER_PORT") or env.get("PORT") or 7860)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
private_temp_dir()
SETTINGS = read_settings()
DEVICE = choose_device(SETTINGS)
PIPELINE = place(load(SETTINGS, DEVICE), DEVICE)  # weights loaded once, on CUDA at import under ZeroGPU
log.info("serving %s on %s (ZeroGPU: %s)", PIPELINE.name, DEVICE, zero_gpu())
demo = make_demo(PIPELINE, SETTINGS.max_duration, gpu=gpu_wrapper(PIPELINE))

if __name__ == "__main__":
    from app import tempdirs

    tempdirs.handle_termination()
    host, port = server_address()
    try:
        launch(demo, host=host, port=port, max_upload_mb=SETTINGS.max_upload_mb)
    finally:
        tempdirs.cleanup()
