"""``python app.py [options]``: load a model and serve the app on 127.0.0.1:7860.

Safe defaults: bound to loopback, no share link unless ``--share``, uploads capped
(``--max-upload-mb``) and clips capped (``--max-duration``, applied to the video stream, its audio
track and a separate audio file), one model call at a time (the rest queue), at most
``--max-sessions`` sessions' last runs kept, Gradio's cache swept of old files, and only the
example folder served besides it. Temporary folders are removed on exit, Ctrl-C and SIGTERM, and
those of servers that died (kill -9, OOM) are swept at the next start.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from crab_core.errors import ConfigError, CrabError

from . import tempdirs

log = logging.getLogger("crab_studio.app")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
MAX_SESSIONS = 64
#: Unheld upload copies kept for reuse (copies a live run needs are kept regardless).
UPLOAD_COPIES = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="app.py", description="Crab Studio: run Crab tasks and inspect I-LoRA heads."
    )
    p.add_argument(
        "--model",
        default="crab-tiny",
        help="crab-tiny (assets/crab-tiny, random weights when absent), a model folder, or crab-7b",
    )
    p.add_argument(
        "--random", action="store_true", help="serve a randomly initialised crab-tiny (fast start)"
    )
    p.add_argument(
        "--llm", default=None, help="crab-7b: LLaMA-2-7B-chat folder or Hub id (also the tokenizer)"
    )
    p.add_argument("--clip", default=None, help="crab-7b: CLIP ViT-L/14 folder or Hub id")
    p.add_argument("--beats", default=None, help="crab-7b: BEATs iter3+ .pt file or URL")
    p.add_argument(
        "--crab",
        action="append",
        default=[],
        help="crab-7b: released Crab file, local or owner/repo/file on the Hub (repeatable; "
        "avs and avss files are kept both and switched per task)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio share link")
    p.add_argument("--max-upload-mb", type=float, default=50.0)
    p.add_argument("--max-duration", type=float, default=60.0, help="longest accepted clip in seconds")
    p.add_argument("--concurrency", type=int, default=1, help="model calls running at once (others queue)")
    p.add_argument("--queue-size", type=int, default=64, help="most requests waiting in the queue")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=MAX_SESSIONS,
        help="most sessions whose last run is kept in memory (the oldest is dropped)",
    )
    args = p.parse_args(argv)
    for name in ("max_upload_mb", "max_duration", "concurrency", "queue_size", "max_sessions"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def load_pipeline(args: argparse.Namespace):
    """The :class:`CrabPipeline` named by the arguments."""
    import torch

    from crab_core import CrabPipeline

    if args.random:
        return CrabPipeline.random_tiny(args.device)
    if args.model != "crab-7b":
        return CrabPipeline.load(args.model, device=args.device)
    from crab_core.checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources
    from crab_core.pipeline_official import load_crab_7b_pipeline

    src = OfficialSources(
        llm=args.llm or DEFAULT_LLM, clip=args.clip or DEFAULT_CLIP, beats=args.beats, crab=tuple(args.crab)
    )
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    return load_crab_7b_pipeline(src, device=args.device, dtype=dtype)  # AVS / AVSS sets switched per task


def class_names_for(pipeline) -> list[str] | None:
    """AVSS legend names: SynthAV classes for crab-tiny (pixel k + 1 = class k), else None."""
    if pipeline.model.config.name == "crab-tiny":
        from crab_core import SYNTHAV_CLASSES

        return list(SYNTHAV_CLASSES)
    return None


def make_demo(
    pipeline,
    max_duration_s: float = 60.0,
    concurrency: int = 1,
    queue_size: int = 64,
    uploads_dir: str | os.PathLike | None = None,
    gpu=None,
):
    """Build the queued demo for ``pipeline``; upload copies go to ``uploads_dir`` (default: a new
    private folder); ``gpu`` runs the model calls (:mod:`app.gpu`; ZeroGPU on a Space)."""
    from .engine import Engine
    from .ui import build_demo
    from .uploads import UploadIndex

    if not pipeline.trained and pipeline.model.config.name == "crab-tiny":
        from crab_core.interpret.ablation import randomize_heads

        # an untrained model's LoRA B heads are zero: give them small random weights so that
        # ablating or forcing a head visibly changes the output (the UI says the model is random)
        randomize_heads(pipeline.model, std=0.5)
    engine = Engine(pipeline, max_duration_s=max_duration_s, class_names=class_names_for(pipeline))
    uploads = UploadIndex(uploads_dir or tempdirs.private_dir("uploads"), max_files=UPLOAD_COPIES)
    demo = build_demo(engine, uploads, gpu)
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo


def private_temp_dir() -> str:
    """Gradio's upload / cache folder: ``GRADIO_TEMP_DIR`` when set (checked writable), else a fresh
    private folder removed at exit.

    Raises:
        ConfigError: the folder (or the system temp folder) is not writable.
    """
    if os.environ.get("GRADIO_TEMP_DIR"):
        return str(tempdirs.check_writable(os.environ["GRADIO_TEMP_DIR"], "GRADIO_TEMP_DIR"))
    try:
        path = str(tempdirs.private_dir("studio"))
    except OSError as exc:
        import tempfile

        raise ConfigError(
            f"the temporary folder ({tempfile.gettempdir()}) is not writable: "
            f"{exc.strerror or exc}; set TMPDIR to a writable folder"
        ) from None
    os.environ["GRADIO_TEMP_DIR"] = path
    return path


def launch(
    demo,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    max_upload_mb: float = 50.0,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    max_sessions: int = MAX_SESSIONS,
):
    """Launch with the app's safety settings; returns Gradio's ``(app, local_url, share_url)``."""
    from .ui import css

    allowed = [str(EXAMPLES)] if EXAMPLES.is_dir() else []
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=allowed,
        max_file_size=int(max_upload_mb * 1024 * 1024),
        show_error=True,
        css=css(),
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        footer_links=["api"],
        state_session_capacity=max_sessions,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _prepare(args: argparse.Namespace) -> str:
    """Everything that can fail on the environment, before the model loads: returns the uploads folder."""
    tempdirs.sweep_stale()
    private_temp_dir()
    try:
        return str(tempdirs.private_dir("uploads"))
    except OSError as exc:
        raise ConfigError(
            f"cannot create the uploads folder: {exc.strerror or exc}; set TMPDIR to a writable folder"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run the server until Ctrl-C or SIGTERM; returns the exit status (1: a one-line error was logged)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tempdirs.handle_termination()
    try:
        uploads_dir = _prepare(args)
        t0 = time.perf_counter()
        try:
            pipeline = load_pipeline(args)
        except CrabError as exc:
            log.error("cannot load the model: %s", _one_line(exc))
            return 1
        except (OSError, ValueError, RuntimeError) as exc:  # a library bug or an unforeseen file problem
            log.debug("model loading failed", exc_info=True)
            log.error("cannot load the model %s: %s: %s", args.model, type(exc).__name__, _one_line(exc))
            return 1
        demo = make_demo(pipeline, args.max_duration, args.concurrency, args.queue_size, uploads_dir)
        log.info(
            "model %s ready in %.1f s (%s)",
            pipeline.name,
            time.perf_counter() - t0,
            "trained" if pipeline.trained else "RANDOM WEIGHTS",
        )
        launch(demo, args.host, args.port, args.share, args.max_upload_mb, max_sessions=args.max_sessions)
    except CrabError as exc:
        log.error("%s", _one_line(exc))
        return 1
    except KeyboardInterrupt:
        log.info("stopped")
        return 130
    finally:
        tempdirs.cleanup()
    return 0
