"""Run one task on media files and print the answer (and save the mask of a segmentation task).

Inputs: a video (its own audio track is used), a video plus a separate audio file, or an image plus an
audio file (S4 / MS3 / Ref-AVS then run their image + audio prompt, AVSS its usual one). Notes on how
the input was read (e.g. a separate audio file of another length) and the out-of-domain notice of
crab-tiny on inputs that are not SynthAV clips go to stderr, and into the --json output.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli_common import PROG, add_model_args, check_output, load_pipeline, positive_int, save_atomically
from .tasks import TASKS

MASK_SUFFIXES = (".png",)
OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SEG_TASKS = tuple(name for name, spec in TASKS.items() if spec.needs_mask)
EXAMPLES = f"""examples:
  {PROG} infer --task ave --video clip.mp4
  {PROG} infer --task avqa --video clip.mp4 --question "Is the piano playing?" --json
  {PROG} infer --task s4 --image frame.jpg --audio audio.wav --save-mask mask.png --save-overlay overlay.jpg
  {PROG} infer --task avss --video clip.mp4 --frame-index 3 --save-mask classes.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} infer",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    g = parser.add_argument_group("task and inputs")
    g.add_argument(
        "--task",
        required=True,
        choices=sorted(TASKS),
        metavar="TASK",
        help=f"one of: {', '.join(sorted(TASKS))}",
    )
    g.add_argument(
        "--video", metavar="FILE", help="video file (its own audio track is used unless --audio is given)"
    )
    g.add_argument("--audio", metavar="FILE", help="separate audio file (with --video or --image)")
    g.add_argument(
        "--image",
        metavar="FILE",
        help="image: the ARIG input, the target frame of seg tasks, or with --audio alone the "
        "whole input (AVSBench frame + wav)",
    )
    g.add_argument("--question", metavar="TEXT", help="AVQA question or Ref-AVS expression")
    g.add_argument(
        "--frame-index",
        type=int,
        metavar="I",
        help="target second of seg tasks, 0-based (default 0; with an image + audio: the audio "
        "second the image belongs to)",
    )
    g.add_argument(
        "--max-new-tokens",
        type=positive_int,
        metavar="N",
        help="cap on generated tokens (default: the task's budget)",
    )
    o = parser.add_argument_group("output")
    o.add_argument(
        "--json", action="store_true", help="print one JSON object (answer, notes, out_of_domain, ...)"
    )
    o.add_argument(
        "--save-mask",
        metavar="PATH.png",
        help=f"seg tasks ({', '.join(SEG_TASKS)}): write the mask as a PNG at the input frame's "
        "resolution (binary: 0/255 gray; AVSS: palette PNG whose pixel values are class ids)",
    )
    o.add_argument(
        "--save-overlay",
        metavar="PATH",
        help="seg tasks: write the input frame with the mask drawn over it (.png, .jpg, .webp)",
    )
    return parser


def _check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.save_mask or args.save_overlay) and args.task not in SEG_TASKS:
        which = "--save-mask" if args.save_mask else "--save-overlay"
        parser.error(f"{which} needs a segmentation task ({', '.join(SEG_TASKS)}), not {args.task}")
    check_output(args.save_mask, "--save-mask", MASK_SUFFIXES)
    check_output(args.save_overlay, "--save-overlay", OVERLAY_SUFFIXES)


def _save_outputs(args: argparse.Namespace, pipe, res) -> dict[str, str]:
    """Write --save-mask / --save-overlay at the target frame's resolution; returns ``{kind: path}``."""
    from PIL import Image

    from .errors import InternalError
    from .media.clip import load_target_frame
    from .media.mask import mask_to_image, overlay_mask
    from .pipeline import resolve_inputs

    if res.mask is None:
        raise InternalError(f"the {args.task} answer produced no mask to save")
    spec = TASKS[args.task]
    _, frame_index, _ = resolve_inputs(args.task, args.video, args.image, args.frame_index, res.variant)
    frame = load_target_frame(
        args.video,
        args.image,
        task_frames=spec.num_frames,
        frame_index=frame_index,
        max_duration_s=pipe.max_duration_s,
    )
    h, w = frame.shape[:2]
    logits = res.mask_logits if res.mask_logits is not None and res.mask_logits.shape[0] == 1 else None
    mask_img = mask_to_image(res.mask, (w, h), logits)
    saved = {}
    if args.save_mask:
        save_atomically(
            check_output(args.save_mask, "--save-mask", MASK_SUFFIXES),
            lambda p: mask_img.save(p, format="PNG"),
        )
        saved["mask"] = args.save_mask
    if args.save_overlay:
        blended = Image.fromarray(overlay_mask(frame, mask_img))
        save_atomically(check_output(args.save_overlay, "--save-overlay", OVERLAY_SUFFIXES), blended.save)
        saved["overlay"] = args.save_overlay
    return saved


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_outputs(parser, args)  # before anything is decoded or loaded
    from .media import check_media

    check_media(
        args.video, args.audio, args.image, max_duration_s=args.max_duration
    )  # before loading a model
    pipe = load_pipeline(args)
    want_mask = bool(args.save_mask or args.save_overlay)
    res = pipe.run(
        args.task,
        video=args.video,
        audio=args.audio,
        image=args.image,
        question=args.question,
        frame_index=args.frame_index,
        max_new_tokens=args.max_new_tokens,
        force_mask=want_mask,
    )
    saved = _save_outputs(args, pipe, res) if want_mask else {}
    for note in res.notes:
        sys.stderr.write(f"note: {note}\n")
    if res.out_of_domain:
        sys.stderr.write(f"warning: {res.out_of_domain}\n")
    if args.json:
        out = res.to_json()
        out.update(model=pipe.name, trained=pipe.trained, saved=saved)
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    if not pipe.trained:
        sys.stdout.write("note: randomly initialised model, the answer is noise\n")
    sys.stdout.write(res.text + "\n")
    err = getattr(res.parsed, "parse_error", None)
    sys.stdout.write(f"parsed: {res.to_json()['parsed'] if err is None else 'unparseable: ' + err}\n")
    if res.mask is not None:
        sys.stdout.write(f"mask: {res.mask.shape}, area {float((res.mask > 0).mean()):.3f}\n")
    for kind, path in saved.items():
        sys.stdout.write(f"saved {kind}: {path}\n")
    return 0
