"""``python app.py [options]``: load a model and serve the app on 127.0.0.1:7860.

Safe defaults: bound to loopback, no share link unless ``--share``, uploads capped
(``--max-upload-mb``) and clips capped (``--max-duration``), one model call at a time (the rest
queue), Gradio's cache swept of old files, and only the example folder served besides it.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from crab_core.errors import CrabError

log = logging.getLogger("crab_studio.app")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="Crab Studio: run Crab tasks and inspect I-LoRA heads.")
    p.add_argument("--model", default="crab-tiny",
                   help="crab-tiny (assets/crab-tiny, random weights when absent), a model folder, or crab-7b")
    p.add_argument("--random", action="store_true", help="serve a randomly initialised crab-tiny (fast start)")
    p.add_argument("--llm", default=None, help="crab-7b: LLaMA-2-7B-chat folder or Hub id (also the tokenizer)")
    p.add_argument("--clip", default=None, help="crab-7b: CLIP ViT-L/14 folder or Hub id")
    p.add_argument("--beats", default=None, help="crab-7b: BEATs iter3+ .pt file")
    p.add_argument("--crab", action="append", default=[], help="crab-7b: released Crab weight file (repeatable)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio share link")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-duration", type=float, default=60.0, help="longest accepted clip in seconds")
    p.add_argument("--concurrency", type=int, default=1, help="model calls running at once (others queue)")
    p.add_argument("--queue-size", type=int, default=64, help="most requests waiting in the queue")
    return p.parse_args(argv)


def load_pipeline(args: argparse.Namespace):
    """The :class:`CrabPipeline` named by the arguments."""
    import torch

    from crab_core.pipeline import CrabPipeline

    if args.random:
        return CrabPipeline.random_tiny(args.device)
    if args.model != "crab-7b":
        return CrabPipeline.load(args.model, device=args.device)
    from crab_core.checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources, load_crab_7b, resolve
    from crab_core.tokenizer import CrabTokenizer

    src = OfficialSources(llm=args.llm or DEFAULT_LLM, clip=args.clip or DEFAULT_CLIP, beats=args.beats,
                          crab=tuple(args.crab))
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    model, report = load_crab_7b(src, device=args.device, dtype=dtype)
    tok = CrabTokenizer.from_dir(resolve(src.llm), model.config)
    card = {"sources": {"llm": src.llm, "clip": src.clip, "beats": src.beats, "crab": list(src.crab)},
            "load_report": report.summary()}
    return CrabPipeline(model, tok, name="crab-7b", trained=bool(src.crab), card=card)


def class_names_for(pipeline) -> list[str] | None:
    """AVSS legend names: SynthAV classes for crab-tiny (pixel k + 1 = class k), else None."""
    if pipeline.model.config.name == "crab-tiny":
        from crab_core.synthav import CLASSES
        return list(CLASSES)
    return None


def make_demo(pipeline, max_duration_s: float = 60.0, concurrency: int = 1, queue_size: int = 64):
    """Build the queued demo for ``pipeline``."""
    from .engine import Engine
    from .ui import build_demo

    if not pipeline.trained and pipeline.model.config.name == "crab-tiny":
        from crab_core.interpret.ablation import randomize_heads

        # an untrained model's LoRA B heads are zero: give them small random weights so that
        # ablating or forcing a head visibly changes the output (the UI says the model is random)
        randomize_heads(pipeline.model, std=0.5)
    engine = Engine(pipeline, max_duration_s=max_duration_s, class_names=class_names_for(pipeline))
    demo = build_demo(engine)
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo


def private_temp_dir() -> str:
    """A fresh Gradio upload / cache folder, removed at exit (unless GRADIO_TEMP_DIR is set)."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return os.environ["GRADIO_TEMP_DIR"]
    path = tempfile.mkdtemp(prefix="crab-studio-")
    os.environ["GRADIO_TEMP_DIR"] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def launch(demo, host: str = "127.0.0.1", port: int = 7860, share: bool = False, max_upload_mb: float = 50.0,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch with the app's safety settings; returns Gradio's ``(app, local_url, share_url)``."""
    from .ui import css

    allowed = [str(EXAMPLES)] if EXAMPLES.is_dir() else []
    return demo.launch(server_name=host, server_port=port, share=share, allowed_paths=allowed,
                       max_file_size=int(max_upload_mb * 1024 * 1024), show_error=True, css=css(),
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet, footer_links=["api"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    private_temp_dir()
    t0 = time.perf_counter()
    try:
        pipeline = load_pipeline(args)
    except CrabError as exc:
        log.error("cannot load the model: %s", exc)
        return 1
    demo = make_demo(pipeline, args.max_duration, args.concurrency, args.queue_size)
    log.info("model %s ready in %.1f s (%s)", pipeline.name, time.perf_counter() - t0,
             "trained" if pipeline.trained else "RANDOM WEIGHTS")
    launch(demo, args.host, args.port, args.share, args.max_upload_mb)
    return 0
