"""Shared CLI options: choosing and loading a model for the pipeline, the input limits, output files.

Nothing heavy is imported at module level: ``python -m crab_core infer --help`` never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path

from .errors import OutputError

log = logging.getLogger(__name__)

PROG = "python -m crab_core"
#: Same value as :data:`crab_core.media.limits.DEFAULT_MAX_DURATION_S` (a test checks), repeated here so
#: that building the parsers imports neither torch nor the media stack.
DEFAULT_MAX_DURATION_S = 60.0
#: Models below this many parameters run on one CPU thread unless --threads says otherwise: their
#: operations are too small for intra-op parallelism to pay (crab-tiny generates ~5x faster on 1 thread
#: than on 2 on a loaded 2-core machine; see benchmarks/results/cli_startup.md).
SMALL_MODEL_PARAMS = 50_000_000


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--max-new-tokens -5`` is a usage error, not an empty answer)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (at least 1), got {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Model choice, device, threads, and ``--max-duration`` (the input limit every command applies).

    ``--llm``, ``--clip``, ``--beats`` and ``--crab`` are given as in ``app.py`` (``--crab`` once per file).
    """
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default="crab-tiny",
        metavar="NAME_OR_DIR",
        help="crab-tiny (shipped, default), crab-7b (official weights: see --llm/--clip/--beats/--crab) "
        "or a model folder in our format",
    )
    g.add_argument(
        "--device",
        default="auto",
        help="torch device: cpu, cuda, cuda:1, ... (default: auto = cuda when available, else cpu)",
    )
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="torch CPU threads (default: 1 for small models such as crab-tiny, else torch's default)",
    )
    g.add_argument(
        "--llm", metavar="DIR_OR_ID", help="crab-7b: LLaMA-2-7B-chat folder or Hub id (also the tokenizer)"
    )
    g.add_argument("--clip", metavar="DIR_OR_ID", help="crab-7b: CLIP ViT-L/14 folder or Hub id")
    g.add_argument("--beats", metavar="FILE_OR_URL", help="crab-7b: BEATs iter3+ .pt file or URL")
    g.add_argument(
        "--crab",
        action="append",
        default=[],
        metavar="FILE",
        help="crab-7b: released Crab file, local or owner/repo/file on the Hub (repeat: --crab A.bin "
        "--crab B.bin); avs and avss files are both kept and switched per task",
    )
    g.add_argument(
        "--max-duration",
        type=positive_seconds,
        default=DEFAULT_MAX_DURATION_S,
        metavar="S",
        help="longest accepted video stream, audio track or audio file in seconds "
        f"(default {DEFAULT_MAX_DURATION_S:.0f}); longer inputs are rejected",
    )


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def apply_threads(model, threads: int | None) -> int:
    """Set torch's CPU threads: ``threads`` when given, else 1 for models under :data:`SMALL_MODEL_PARAMS`.
    Returns the thread count in effect."""
    import torch

    if threads is None and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def load_pipeline(args: argparse.Namespace):
    """Build the :class:`CrabPipeline` the options describe (``--max-duration`` and ``--threads`` applied)."""
    import torch

    from .pipeline import CrabPipeline

    limit = getattr(args, "max_duration", DEFAULT_MAX_DURATION_S)
    device = resolve_device(args.device)
    if args.model != "crab-7b":
        pipe = CrabPipeline.load(args.model, device=device, max_duration_s=limit)
    else:
        from .checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources
        from .pipeline_official import load_crab_7b_pipeline

        src = OfficialSources(
            llm=args.llm or DEFAULT_LLM,
            clip=args.clip or DEFAULT_CLIP,
            beats=args.beats,
            crab=tuple(args.crab),
        )
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        # the AVS / AVSS files are kept side by side and switched per task (infer and eval)
        pipe = load_crab_7b_pipeline(src, device=device, dtype=dtype, max_duration_s=limit)
    apply_threads(pipe.model, getattr(args, "threads", None))
    return pipe


def check_output(path: str | None, option: str, suffixes: tuple[str, ...]) -> Path | None:
    """Check an output file before any work: allowed extension, an existing writable folder, not a folder.

    Raises:
        OutputError: in one line naming the option.
    """
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise OutputError(f"{option} {p.name}: the file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{option} {path}: the folder {parent} is not writable")
    return p


def save_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
