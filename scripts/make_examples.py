"""Generate the app's SynthAV example clips into ``assets/examples/`` (one per task, ~1 MB total).

Usage: ``python scripts/make_examples.py [--out assets/examples] [--seed 0] [--image-size 112]``.
Writes ``<task>.mp4`` (10 s or 5 s, H.264 + AAC), ``<task>_mask.png`` for seg tasks and
``examples.json`` (one row per clip: label, task, video, question, frame_index, gt_mask, gt).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crab_core.synthav import generate_split  # noqa: E402

log = logging.getLogger("make_examples")
LABELS = {
    "ave": "AVE",
    "avvp": "AVVP",
    "avqa": "AVQA",
    "arig": "ARIG",
    "s4": "S4",
    "ms3": "MS3",
    "avss": "AVSS",
    "ref-avs": "Ref-AVS",
    "caption": "Captioning",
}
MAX_BYTES = 2 * 1024 * 1024


def make_examples(out: Path, seed: int = 0, image_size: int = 112, split: str = "test") -> list[dict]:
    """Render one sample per task and copy its files into ``out``; returns the ``examples.json`` rows."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest, _ = generate_split(tmp, split, len(LABELS), seed, list(LABELS), image_size=image_size)
        root = manifest.parent
        for line in manifest.read_text().splitlines():
            src = json.loads(line)
            task = src["task"]
            shutil.copyfile(root / src["video"], out / f"{task}.mp4")
            gt = dict(src["gt"])
            row = {
                "label": f"{LABELS[task]} (SynthAV)",
                "task": task,
                "video": f"{task}.mp4",
                "question": src.get("question"),
                "frame_index": src.get("frame_index"),
                "gt_mask": None,
                "expected": src["output"],
            }
            if gt.get("mask"):
                shutil.copyfile(root / gt["mask"], out / f"{task}_mask.png")
                row["gt_mask"] = gt["mask"] = f"{task}_mask.png"
            row["gt"] = gt
            rows.append(row)
    (out / "examples.json").write_text(json.dumps(rows, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    if total > MAX_BYTES:
        log.warning("examples take %.1f MB (> 2 MB)", total / 1e6)
    log.info("wrote %d examples (%.2f MB) to %s", len(rows), total / 1e6, out)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "assets" / "examples"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=112, help="frame side (crab-tiny's is 112)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_examples(Path(args.out), args.seed, args.image_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
