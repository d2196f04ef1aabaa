"""``python -m crab_core infer``: run one task on media files and print the answer."""

from __future__ import annotations

import argparse
import json
import sys

from .cli_common import add_model_args, load_pipeline, positive_int
from .tasks import TASKS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m crab_core infer", description=__doc__)
    add_model_args(parser)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--video", help="video file (its own audio track is used unless --audio is given)")
    parser.add_argument("--audio", help="separate audio file")
    parser.add_argument("--image", help="image (ARIG input, or the target frame of seg tasks)")
    parser.add_argument("--question", help="AVQA question or Ref-AVS expression")
    parser.add_argument("--frame-index", type=int, help="target second for seg tasks (0-based)")
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        metavar="N",
        help="cap on generated tokens (default: the task's budget)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from .media import check_media

    check_media(
        args.video, args.audio, args.image, max_duration_s=args.max_duration
    )  # before loading a model
    pipe = load_pipeline(args)
    res = pipe.run(
        args.task,
        video=args.video,
        audio=args.audio,
        image=args.image,
        question=args.question,
        frame_index=args.frame_index,
        max_new_tokens=args.max_new_tokens,
    )
    if args.json:
        out = res.to_json()
        out["model"] = pipe.name
        out["trained"] = pipe.trained
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        if not pipe.trained:
            sys.stdout.write("note: randomly initialised model, the answer is noise\n")
        sys.stdout.write(res.text + "\n")
        err = getattr(res.parsed, "parse_error", None)
        sys.stdout.write(f"parsed: {res.to_json()['parsed'] if err is None else 'unparseable: ' + err}\n")
        if res.mask is not None:
            sys.stdout.write(f"mask: {res.mask.shape}, area {float((res.mask > 0).mean()):.3f}\n")
    return 0
