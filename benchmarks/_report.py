"""Shared tail of the benchmark scripts: a dated header line and the markdown written to results/."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch


def header(command: str, threads: int) -> str:
    """`` `command` · date · machine · torch version · threads`` (one markdown line)."""
    return (
        f"`{command}` · {time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · "
        f"torch {torch.__version__} · {threads} thread(s)"
    )


def write_report(out: str | Path, name: str, md: str) -> int:
    """Write ``md`` to ``out/name`` (folders created) and echo it; returns exit code 0."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(md)
    sys.stdout.write(md)
    return 0


def eval_answers(model: str, manifest: Path, work: Path, task: str) -> list[tuple[dict, str]]:
    """``(manifest row, answer text)`` of every ``task`` row of ``manifest`` that
    ``python -m crab_core eval --model model`` answered (its ``--results`` file, kept in ``work``)."""
    import json
    import subprocess

    results = Path(work) / "answers.jsonl"
    cmd = [sys.executable, "-m", "crab_core", "eval", "--model", model, "--data", str(manifest)]
    cmd += ["--tasks", task, "--results", str(results), "--batch-size", "8", "--no-progress", "--json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines() if x.strip()]
    out = []
    for line in results.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "key" in rec and not rec.get("error"):
            out.append((rows[int(rec["key"].split(":")[0]) - 1], rec["text"]))  # manifest lines start at 1
    return out


def load_run(checkpoint: str, recipe: str):
    """A training run's module (model and its probes) from ``checkpoint/model.safetensors``, in eval
    mode; exits with a clear message when the checkpoint does not fit ``recipe``."""
    from safetensors.torch import load_file

    from crab_core.training.module import build_train_module
    from crab_core.training.recipe import get_recipe

    module = build_train_module(get_recipe(recipe))
    missing, unexpected = module.load_state_dict(
        load_file(Path(checkpoint) / "model.safetensors"), strict=False
    )
    if missing or unexpected:
        raise SystemExit(
            f"{checkpoint} does not fit recipe {recipe}: {len(missing)} missing, {len(unexpected)} unexpected"
        )
    return module.eval()


def write_results(out: str | Path, name: str, res: dict, md: str) -> int:
    """Write ``res`` to ``out/name.json`` and ``md`` to ``out/name.md`` (folders created); returns 0."""
    import json

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(res, indent=1))
    return write_report(folder, f"{name}.md", md)
