"""``python -m crab_core space build --out DIR [--model crab-tiny|crab-7b] [--push REPO_ID]``."""

from __future__ import annotations

import argparse
import sys

from ..cli_common import PROG

EXAMPLES = f"""examples:
  {PROG} space build --out build/space
  {PROG} space build --out build/space --push your-name/crab-studio     (HF_TOKEN from the environment)
  {PROG} space build --out build/space7b --model crab-7b --beats https://.../BEATs_iter3_plus.pt
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} space",
        description="Build a self-contained Hugging Face Space folder (and upload it).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="build")
    b = sub.add_parser(
        "build",
        prog=f"{PROG} space build",
        help="write the Space folder (code, assets, front matter, pinned requirements, LFS rules)",
        description="Write the Space folder; with --push, upload it (token: HF_TOKEN, never written).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--out", required=True, metavar="DIR", help="the folder to write (new, empty or an earlier build)"
    )
    b.add_argument(
        "--model", default="crab-tiny", choices=("crab-tiny", "crab-7b"), help="model the Space serves"
    )
    b.add_argument(
        "--push", metavar="REPO_ID", help="upload to this Space (owner/name; created when missing)"
    )
    b.add_argument("--private", action="store_true", help="with --push: create the Space private")
    b.add_argument("--llm", metavar="HUB_ID", help="crab-7b: LLaMA-2-7B-chat Hub id (default: meta-llama's)")
    b.add_argument("--clip", metavar="HUB_ID", help="crab-7b: CLIP ViT-L/14 Hub id (default: openai's)")
    b.add_argument(
        "--beats",
        metavar="FILE_OR_URL",
        help="crab-7b: BEATs iter3+ .pt (a local file is bundled; a URL is kept)",
    )
    b.add_argument(
        "--crab",
        action="append",
        default=[],
        metavar="FILE_OR_HUB_FILE",
        help="crab-7b: a released Crab file, local (bundled) or owner/repo/file (repeatable; "
        "default: the three files of ahsgdxhs/Crab)",
    )
    return p


def main(argv: list[str]) -> int:
    from .build import SpaceSources, build_space

    args = build_parser().parse_args(argv)
    sources = SpaceSources(llm=args.llm, clip=args.clip, beats=args.beats, crab=tuple(args.crab))
    if args.model != "crab-7b" and (args.llm or args.clip or args.beats or args.crab):
        sys.stderr.write("error: --llm, --clip, --beats and --crab are crab-7b options\n")
        return 2
    report = build_space(args.out, args.model, sources)
    sys.stdout.write(report.summary() + "\n")
    if args.push:
        from .push import push_space

        sys.stdout.write(f"pushed: {push_space(report.out, args.push, private=args.private)}\n")
        if args.model == "crab-7b":
            sys.stdout.write(
                "next: in the Space settings choose ZeroGPU (or a GPU) and add the secret HF_TOKEN "
                "(a read token of an account that accepted the LLaMA-2 licence)\n"
            )
    return 0
