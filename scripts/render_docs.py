"""Rewrite the generated regions of the docs from the committed results files.

A region is the text between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``
in README.md, assets/crab-tiny/MODEL_CARD.md or any docs/**/*.md; NAME picks its builder
(:data:`BUILDERS`, each reading the committed results files: ``benchmarks/results/*``,
``assets/crab-tiny/training.json``, ``docs/interpret/profile*/``). Everything outside the markers
is left byte for byte::

    python scripts/render_docs.py            # rewrite the regions that are out of date
    python scripts/render_docs.py --check    # exit 1 with a diff when one is out of date (CI)

Exit status: 0 up to date (or rewritten), 1 out of date with ``--check``, 2 a results file or a
marker is broken (one line on stderr).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crab_core import doc_crab_tiny as ct  # noqa: E402
from crab_core import doc_interpret as di  # noqa: E402
from crab_core import doc_tables as dt  # noqa: E402
from crab_core.errors import ReportError  # noqa: E402
from crab_core.reports import avqa_type_table, quality_table  # noqa: E402

PROFILE, PROFILE_V4 = "docs/interpret/profile", "docs/interpret/profile_v4"
_EXP = "seg stage retrained (600 steps), prompt decoder, trains seg_module,lora"


def _prompt_choices(ctx: dt.DocContext) -> str:
    from crab_core.tasks.prompts import PROMPT_CHOICES

    rows = [f"| {task} | `{variant}` | {why} |" for task, (variant, why) in PROMPT_CHOICES.items()]
    return "| task | default variant | why |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def _ilora_ablation(ctx: dt.DocContext) -> str:
    """The I-LoRA ablation report (benchmarks/ilora_ablation.py), or a line saying it has not run yet."""
    if not ctx.result("ilora_ablation.md").is_file():
        return (
            "_No results yet: `python benchmarks/ilora_ablation.py` writes "
            "`benchmarks/results/ilora_ablation.md` / `.json` / `.png`._\n"
        )
    return dt.include_section("ilora_ablation.md")(ctx)


def _kept_quality(sub: str) -> Callable[[dt.DocContext], str]:
    """The quality table of a crab-tiny that is not the shipped one (results in ``results/<sub>/``)."""

    def build(ctx: dt.DocContext) -> str:
        folder = ctx.results_dir / sub
        return quality_table(ctx.quality(folder), folder=ctx.rel(folder))

    return build


#: region name -> builder(DocContext) -> markdown
BUILDERS: dict[str, Callable[[dt.DocContext], str]] = {
    "crab-tiny-quality": lambda ctx: quality_table(ctx.quality(), folder=ctx.rel(ctx.results_dir)),
    "crab-tiny-avqa-types": lambda ctx: (
        avqa_type_table(ctx.quality()) or "_No per-question-type AVQA results._\n"
    ),
    "crab-tiny-v4-quality": _kept_quality("v4"),
    "crab-tiny-v6-candidate-quality": _kept_quality("v6-candidate"),
    "crab-tiny-v7-candidate-quality": _kept_quality("v7-candidate"),
    "crab-tiny-v8-candidate-quality": _kept_quality("v8-candidate"),
    "crab-tiny-v10-candidate-quality": _kept_quality("v10-candidate"),
    "crab-tiny-v11-candidate-quality": _kept_quality("v11-candidate"),
    "crab-tiny-v13-candidate-quality": _kept_quality("v13-candidate"),
    "crab-tiny-candidates": ct.candidates_table(
        [
            ("v5 (shipped)", ""),
            ("v6", "v6-candidate"),
            ("v7", "v7-candidate"),
            ("v8", "v8-candidate"),
            ("v10", "v10-candidate"),
            ("v11", "v11-candidate"),
            ("v13", "v13-candidate"),
        ]
    ),
    "prompt-choices": _prompt_choices,
    "ilora_ablation": _ilora_ablation,
    "crab-tiny-architecture": ct.crab_tiny_architecture,
    "crab-tiny-facts": ct.crab_tiny_facts,
    "crab-tiny-recipe": ct.crab_tiny_recipe,
    "verify-reference": dt.verify_table,
    "verify-reference-summary": dt.verify_summary,
    "ilora-summary": dt.ilora_summary,
    "ilora-table": dt.include_tables("ilora.md"),
    "tiny-training-choices": dt.include_tables("tiny_training_choices.md", (0, 1), heading=True),
    "audio-tower-schedule": dt.include_tables("audio_tower_schedule.md"),
    "seg-selection": ct.seg_selection_table(
        [
            ("seg_exp_prompt_lora.json", "shipped", "v4 (shipped then)"),
            ("seg_exp_prompt_lora.json", _EXP, "v4 + prompt decoder, I-LoRA in seg stage (600 steps)"),
            (
                "seg_exp_prompt_lora_probe.json",
                _EXP + ",tower_heads, seg-token probe x1.0",
                "same + seg-token probe",
            ),
            ("seg_selection_v5.json", "shipped", "v5 (shipped)"),
        ]
    ),
    "learning-curves": dt.include_section("learning_curves.md"),
    "signal-paths": dt.include_section("signal_paths.md"),
    "frame-token-boxes": dt.include_tables("frame_token_boxes.md"),
    "frame-token-boxes-mlp": dt.include_section("frame_token_boxes_mlp.md"),
    "llm-side": dt.include_section("llm_side.md"),
    "avqa-binding": dt.include_section("avqa_binding.md"),
    "learning-curves-v6": dt.include_section("learning_curves_v6.md"),
    "crab-tiny-v7-ave500": lambda ctx: (
        "**v5 (shipped)**\n\n"
        + dt.include_tables("crab_tiny_quality_ave500.md")(ctx)
        + "\n**v7**\n\n"
        + dt.include_tables("crab_tiny_quality_ave500.md", under="benchmarks/results/v7-candidate")(ctx)
    ),
    "avvp-layout": dt.include_section("avvp_layout.md"),
    "learning-curves-v7": dt.include_section("learning_curves_v7.md"),
    "avvp-polyphony": dt.include_section("avvp_polyphony.md"),
    "avqa-stages": dt.include_section("avqa_stages.md"),
    "avqa-stages-v8-snapshots": dt.include_section("avqa_stages_v8_snapshots.md"),
    "avqa-restate": dt.include_section("avqa_restate.md"),
    "avqa-restate-mix": dt.include_section("avqa_restate_mix.md"),
    "avqa-probe": dt.include_section("avqa_probe.md"),
    "avqa-capacity": dt.include_section("avqa_capacity.md"),
    "avqa-capacity-lr": dt.include_section("avqa_capacity_lr.md"),
    "avqa-decision-probe": dt.include_section("avqa_decision_probe.md"),
    "llm-membership": dt.include_section("llm_membership.md"),
    "llm-membership-layouts": dt.include_section("llm_membership_layouts.md"),
    "llm-membership-small-batch": dt.include_section("llm_membership_small_batch.md"),
    "llm-membership-sep": dt.include_section("llm_membership_sep.md"),
    "llm-membership-sep-lr": dt.include_section("llm_membership_sep_lr.md"),
    "avqa-types-v10": dt.include_section("avqa_types_v10.md"),
    "avqa-capacity-v10": dt.include_section("avqa_capacity_v10.md"),
    "avqa-capacity-v10-base": dt.include_section("avqa_capacity_v10_base.md"),
    "avqa-decision-probe-v10": dt.include_section("avqa_decision_probe_v10.md"),
    "avqa-types-align": dt.include_section("avqa_types_align.md"),
    "avqa-types-v11": dt.include_section("avqa_types_v11.md"),
    "avqa-flag-probe-v11": dt.include_section("avqa_flag_probe_v11.md"),
    "avqa-flag-probe-v11-snapshots": dt.include_tables("avqa_flag_probe_v11_snapshots.md"),
    "avqa-flag-probe-v12": dt.include_section("avqa_flag_probe_v12.md"),
    "avqa-flag-probe-v13": dt.include_section("avqa_flag_probe_v13.md"),
    "llm-membership-sep-all": dt.include_section("llm_membership_sep_all.md"),
    "avqa-flag-train": dt.include_section("avqa_flag_train.md"),
    "avqa-flag-train-weighted": dt.include_tables("avqa_flag_train_weighted.md"),
    "avqa-flag-train-weighted-2e-3": dt.include_tables("avqa_flag_train_weighted_lr2e-3.md"),
    "seg-selection-v3": dt.include_tables("seg_selection.md"),
    "seg-selection-v3-3200": dt.include_tables("seg_selection_3200.md"),
    "seg-oracle-prompt": dt.include_tables("seg_oracle_prompt.md"),
    "recipe-reproduction-v4": dt.include_section("recipe_reproduction.md"),
    "app-latency": dt.include_section("app.md", "Latency (benchmarks/app_latency.py)"),
    "app-concurrency": dt.include_section("app.md", "Concurrency (benchmarks/app_concurrency.py)"),
    "interpret-overhead": dt.include_section("interpret.md"),
    "memory": dt.include_section("memory.md"),
    "cli-startup": dt.include_section("cli_startup.md"),
    "interpret-ablation": di.ablation_table(PROFILE),
    "interpret-agreement": di.agreement_table(PROFILE),
    "interpret-attribution": di.attribution_table(PROFILE + "/attribution_sanity.json"),
    "interpret-routing": di.routing_table([(PROFILE_V4, "v4"), (PROFILE, "v5")]),
    "interpret-kinds": di.kind_table([(PROFILE_V4, "v4"), (PROFILE, "v5")]),
    "interpret-nll": dt.include_tables("ablation.md", (1,), under=PROFILE),
    "interpret-ablation-v4": di.ablation_table(PROFILE_V4),
    "interpret-attribution-v4": di.attribution_table(PROFILE_V4 + "/attribution_sanity.json"),
}
MARKER = re.compile(r"<!-- (BEGIN|END) generated:([A-Za-z0-9_-]+) -->")


def doc_files(root: Path) -> list[Path]:
    """The markdown files whose regions are generated (those that exist)."""
    files = [root / "README.md", root / "assets" / "crab-tiny" / "MODEL_CARD.md"]
    files += sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return [f for f in files if f.is_file()]


def render_text(text: str, ctx: dt.DocContext, where: str = "") -> str:
    """``text`` with every generated region replaced by its builder's output.

    Raises:
        ReportError: unknown region name, an END without its BEGIN, nested or unclosed regions.
    """
    out, pos, open_name, cache = [], 0, None, {}
    for m in MARKER.finditer(text):
        kind, name = m.groups()
        line = text.count("\n", 0, m.start()) + 1
        if kind == "BEGIN":
            if open_name is not None:
                raise ReportError(f"{where}:{line}: BEGIN generated:{name} inside generated:{open_name}")
            if name not in BUILDERS:
                raise ReportError(
                    f"{where}:{line}: unknown generated region {name!r} (known: {sorted(BUILDERS)})"
                )
            out.append(text[pos : m.end()])
            open_name = name
        else:
            if name != open_name:
                raise ReportError(f"{where}:{line}: END generated:{name} without its BEGIN")
            if name not in cache:
                cache[name] = BUILDERS[name](ctx).strip("\n")
            out.append("\n" + cache[name] + "\n")
            out.append(m.group(0))
            open_name = None
        pos = m.end()
    if open_name is not None:
        raise ReportError(f"{where}: generated:{open_name} has no END marker")
    out.append(text[pos:])
    return "".join(out)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.render-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(root: Path, results_dir: Path, check: bool) -> int:
    """Render (or with ``check`` compare) every doc file under ``root``; returns the exit status."""
    ctx = dt.DocContext(root, results_dir)
    stale = []
    for path in doc_files(root):
        old = path.read_text(encoding="utf-8")
        new = render_text(old, ctx, str(path.relative_to(root)))
        if new == old:
            continue
        rel = str(path.relative_to(root))
        stale.append(rel)
        if check:
            diff = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}")
            sys.stdout.writelines(diff)
        else:
            _write(path, new)
    if check and stale:
        sys.stdout.write(f"\nout of date: {', '.join(stale)}; run `python scripts/render_docs.py`\n")
        return 1
    sys.stdout.write(
        f"{'rewrote' if stale else 'up to date'}: {', '.join(stale) or 'all generated regions'}\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 with a diff when a region is out of date")
    p.add_argument("--root", default=str(ROOT), help="repository root (docs are found under it)")
    p.add_argument("--results", default=None, help="results folder (default: ROOT/benchmarks/results)")
    args = p.parse_args(argv)
    root = Path(args.root)
    try:
        return run(root, Path(args.results) if args.results else root / "benchmarks" / "results", args.check)
    except (ReportError, OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"render_docs: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
