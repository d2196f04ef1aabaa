"""``python -m crab_core verify-reference DIR``: compare our model with reference fixtures.

Loads the fixture weights through the same conversion path as official checkpoints, runs every
component the fixture README lists plus the end-to-end splice, logits, router weights, greedy
generation and the AVS training forward, and prints max absolute and relative error per
component. Relative error = max |ours - golden| / max |golden|. Exit code 1 when any relative
error exceeds the tolerance (default 1e-4), an integer tensor differs, or a component fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .fixture import load_fixture_model, load_meta

log = logging.getLogger(__name__)


@dataclass
class Check:
    """One compared tensor. ``exact`` tensors (ids, masks, positions) must be equal."""

    component: str
    name: str
    max_abs: float
    max_rel: float
    exact: bool = False
    error: str | None = None

    def ok(self, tol: float) -> bool:
        if self.error is not None:
            return False
        return self.max_abs == 0.0 if self.exact else self.max_rel <= tol


def compare(
    component: str, name: str, ours: torch.Tensor, ref: torch.Tensor, valid: torch.Tensor | None = None
) -> Check:
    """Compare two tensors; ``valid`` (broadcastable bool) restricts the comparison."""
    ours = ours.detach().cpu()
    ref = ref.detach().cpu()
    if tuple(ours.shape) != tuple(ref.shape):
        return Check(
            component,
            name,
            float("inf"),
            float("inf"),
            error=f"shape {list(ours.shape)} vs golden {list(ref.shape)}",
        )
    exact = not ref.is_floating_point()
    if exact:
        diff = (ours.long() != ref.long()).float()
        return Check(
            component,
            name,
            float(diff.max()) if diff.numel() else 0.0,
            float(diff.max()) if diff.numel() else 0.0,
            exact=True,
        )
    a, b = ours.float(), ref.float()
    if valid is not None:
        v = valid.expand_as(b)
        a, b = a[v], b[v]
    diff = (a - b).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    return Check(component, name, max_abs, max_abs / scale if scale > 0 else max_abs)


def run_checks(folder: Path) -> list[Check]:
    """Run every component check of a fixture folder; failures become ``Check.error``."""
    from . import verify_components as vc

    model, cfg, raw, report = load_fixture_model(folder)
    checks: list[Check] = []
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("a_ilora", lambda: vc.check_ilora(folder)),
        ("b_vl_projector", lambda: vc.check_vl_projector(folder, model)),
        ("c_al_projector", lambda: vc.check_al_projector(folder, model)),
        ("d_fbank", lambda: vc.check_fbank(folder)),
        ("d_beats", lambda: vc.check_beats(folder, model)),
        ("e_clip", lambda: vc.check_clip(folder, model)),
        ("e_image_preprocess", lambda: vc.check_image(folder, raw)),
        ("f_seg", lambda: vc.check_seg(folder, model, load_meta(folder, "f_seg"))),
        ("g_end2end", lambda: vc.check_end2end(folder, model, load_meta(folder, "g_end2end"))),
        ("h_avs_forward", lambda: vc.check_avs_forward(folder, model, load_meta(folder, "h_avs_forward"))),
    ]
    for component, step in steps:
        if not (Path(folder) / component).is_dir():
            checks.append(Check(component, "-", float("inf"), float("inf"), error="folder missing"))
            continue
        try:
            with torch.no_grad():
                checks.extend(step())
        except Exception as exc:  # a component that cannot run is a reported failure
            log.debug("component %s failed:\n%s", component, traceback.format_exc())
            checks.append(
                Check(component, "-", float("inf"), float("inf"), error=f"{type(exc).__name__}: {exc}")
            )
    return checks


def format_table(checks: list[Check], tol: float) -> str:
    lines = [f"{'component':<20} {'tensor':<40} {'max abs':>11} {'max rel':>11}  status"]
    for c in checks:
        status = "ok" if c.ok(tol) else ("ERROR " + c.error if c.error else "FAIL")
        kind = " (exact)" if c.exact else ""
        lines.append(f"{c.component:<20} {c.name + kind:<40} {c.max_abs:>11.3e} {c.max_rel:>11.3e}  {status}")
    per: dict[str, list[Check]] = {}
    for c in checks:
        per.setdefault(c.component, []).append(c)
    lines.append("")
    lines.append(f"{'component':<20} {'max abs':>11} {'max rel':>11}  status")
    for comp, cs in per.items():
        ok = all(c.ok(tol) for c in cs)
        lines.append(
            f"{comp:<20} {max(c.max_abs for c in cs):>11.3e} {max(c.max_rel for c in cs):>11.3e}  "
            f"{'ok' if ok else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m crab_core verify-reference", description=__doc__)
    parser.add_argument(
        "folder", type=Path, help="reference fixture folder (config.json, weights.safetensors, …)"
    )
    parser.add_argument("--tol", type=float, default=1e-4, help="maximum relative error (default 1e-4)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the checks to this JSON results file"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checks = run_checks(args.folder)
    sys.stdout.write(format_table(checks, args.tol) + "\n")
    failed = [c for c in checks if not c.ok(args.tol)]
    sys.stdout.write(f"\n{len(checks) - len(failed)} passed, {len(failed)} failed\n")
    if args.out is not None:
        write_results(args.out, checks, args.tol, ["verify-reference", *argv])
    return 1 if failed else 0


def write_results(out: Path, checks: list[Check], tol: float, argv: list[str]) -> None:
    """Write ``checks`` as JSON (``{"command", "date", "torch", "tol", "checks": [...]}``) to ``out``.

    Infinite errors (a failed component) are written as null; ``command`` is ``argv`` as given.
    """
    import json
    import time

    def num(x: float) -> float | None:
        return x if x == x and abs(x) != float("inf") else None

    rows = [
        {
            "component": c.component,
            "name": c.name,
            "max_abs": num(c.max_abs),
            "max_rel": num(c.max_rel),
            "exact": c.exact,
            "ok": c.ok(tol),
            "error": c.error,
        }
        for c in checks
    ]
    body = {
        "command": "python -m crab_core " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "tol": tol,
        "checks": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
