"""Command-line entry: ``python -m crab_core <command> [args]``.

Each subcommand lives in its own module exposing ``main(argv) -> int``; modules are imported
lazily so ``--help`` and ``--version`` import neither torch nor transformers. User errors
(``CrabError``) print one line and exit non-zero, with no traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from . import __version__
from .errors import CrabError

PROG = "python -m crab_core"
COMMANDS = {
    "verify-reference": ("crab_core.checkpoint.verify", "compare our model with reference fixtures"),
    "convert": ("crab_core.checkpoint.convert_cli", "convert official checkpoints to/from our layout"),
    "infer": ("crab_core.cli_infer", "run one task on media files (and save its mask)"),
    "eval": ("crab_core.cli_eval", "evaluate on an AV-UIE-style manifest"),
    "synth": ("crab_core.synthav.generate", "generate SynthAV media and manifests"),
    "train": ("crab_core.training.cli", "train a model (recipes: crab-tiny, ...)"),
    "inspect": ("crab_core.interpret.cli", "interpretability reports (head profiles)"),
    "space": ("crab_core.space.cli", "build (and push) a Hugging Face Space folder"),
    "data": ("crab_core.data.cli", "import official benchmark releases as manifests"),
}
ENTRY = {"synth": "main_synth"}
EXAMPLES = f"""examples:
  {PROG} infer --task ave --video clip.mp4
  {PROG} infer --task s4 --image frame.jpg --audio audio.wav --save-mask mask.png
  {PROG} eval --data data/test/manifest.jsonl --tasks ave,avqa
  {PROG} synth --out data/ --split train --num 1000 --seed 0
"""


def _usage() -> str:
    lines = [
        f"usage: {PROG} COMMAND [options]",
        f"       {PROG} --version",
        "",
        "Run, train and inspect Crab audio-visual models.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<18} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += [
        "",
        "options:",
        "  -h, --help         show this help and exit",
        "  -V, --version      print the version and exit",
        "",
        f"Run '{PROG} COMMAND --help' for the options of a command.",
        "",
        EXAMPLES,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        sys.stdout.write(f"{PROG} (crab-studio) {__version__}\n")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(
            f"error: unknown command {name!r} (commands: {', '.join(COMMANDS)}; see '{PROG} --help')\n"
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[name][0])
    func = getattr(module, ENTRY.get(name, "main"))
    try:
        return int(func(rest) or 0)
    except CrabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
