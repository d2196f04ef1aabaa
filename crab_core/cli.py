"""Command-line entry: ``python -m crab_core <command> [args]``.

Each subcommand lives in its own module exposing ``main(argv) -> int``; modules are imported
lazily so ``--help`` is fast. User errors (``CrabError``) print one line and exit non-zero,
with no traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from .errors import CrabError

COMMANDS = {
    "verify-reference": ("crab_core.checkpoint.verify", "compare our model with reference fixtures"),
    "convert": ("crab_core.checkpoint.convert_cli", "convert official checkpoints to/from our layout"),
    "infer": ("crab_core.cli_infer", "run one task on media files"),
    "eval": ("crab_core.cli_eval", "evaluate on an AV-UIE-style manifest"),
    "synth": ("crab_core.synthav.generate", "generate SynthAV media and manifests"),
    "train": ("crab_core.training.cli", "train a model (recipes: crab-tiny, ...)"),
    "inspect": ("crab_core.interpret.cli", "interpretability reports (head profiles)"),
}
ENTRY = {"synth": "main_synth"}


def _usage() -> str:
    lines = ["usage: python -m crab_core <command> [options]", "", "commands:"]
    lines += [f"  {name:<18} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"error: unknown command {name!r}\n{_usage()}")
        return 2
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
