"""Shared CLI options: choosing and loading a model for the pipeline, and the input limits."""

from __future__ import annotations

import argparse
import math

import torch

from .media.limits import DEFAULT_MAX_DURATION_S


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
    """Model choice, device, and ``--max-duration`` (the input limit every command applies)."""
    parser.add_argument(
        "--model",
        default="crab-tiny",
        help="crab-tiny (shipped), crab-7b (official weights, see --llm/--clip/--beats/--crab) "
        "or a model folder in our format",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--llm", help="crab-7b: LLaMA-2-7B-chat folder or Hub id")
    parser.add_argument("--clip", help="crab-7b: CLIP ViT-L/14 folder or Hub id")
    parser.add_argument("--beats", help="crab-7b: BEATs iter3+ .pt file")
    parser.add_argument("--crab", nargs="*", default=[], help="crab-7b: released Crab files in load order")
    parser.add_argument(
        "--max-duration",
        type=positive_seconds,
        default=DEFAULT_MAX_DURATION_S,
        metavar="S",
        help="longest accepted video stream, audio track or audio file in seconds "
        f"(default {DEFAULT_MAX_DURATION_S:.0f}); longer inputs are rejected",
    )


def load_pipeline(args: argparse.Namespace):
    """Build the :class:`CrabPipeline` the options describe (with ``--max-duration`` applied)."""
    from .pipeline import CrabPipeline

    limit = getattr(args, "max_duration", DEFAULT_MAX_DURATION_S)
    if args.model != "crab-7b":
        return CrabPipeline.load(args.model, device=args.device, max_duration_s=limit)
    from .checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources, load_crab_7b, resolve
    from .tokenizer import CrabTokenizer

    src = OfficialSources(
        llm=args.llm or DEFAULT_LLM, clip=args.clip or DEFAULT_CLIP, beats=args.beats, crab=tuple(args.crab)
    )
    dtype = torch.bfloat16 if str(args.device).startswith("cuda") else torch.float32
    model, _ = load_crab_7b(src, device=args.device, dtype=dtype)
    tok = CrabTokenizer.from_dir(resolve(src.llm), model.config)
    return CrabPipeline(model, tok, name="crab-7b", max_duration_s=limit)
