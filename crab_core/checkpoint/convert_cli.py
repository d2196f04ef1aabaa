"""``python -m crab_core convert``: reference checkpoints <-> our safetensors layout.

``--to ours``: read one or more reference-format files (``finetune_weights.bin``,
``avs_finetune_weights.bin``, pretrain files, fixture ``weights.safetensors``), map every key
to our names (unknown keys are an error) and write one safetensors file.
``--to reference``: the inverse, written as safetensors (which the reference's ``load_ckpt``
reads) or as a ``.bin`` zip of tensors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..errors import CheckpointError
from .convert import ours_to_reference, reference_to_ours
from .io import read_state_dict, write_state_dict


def convert_files(inputs: list[Path], to: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert and merge ``inputs``; returns the tensors and a small report dict."""
    merged: dict[str, torch.Tensor] = {}
    report: dict = {"inputs": [str(p) for p in inputs], "dropped": [], "count": 0}
    for path in inputs:
        sd = read_state_dict(path)
        if to == "ours":
            try:
                ours, dropped, unexpected = reference_to_ours(sd)
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
            if unexpected:
                raise CheckpointError(
                    f"{path}: {len(unexpected)} key(s) no component claims, e.g. {unexpected[:3]}"
                )
            report["dropped"] += dropped
            merged.update(ours)
        else:
            merged.update(ours_to_reference(sd))
    report["count"] = len(merged)
    return merged, report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crab_core convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="input checkpoint file(s), loaded in order")
    parser.add_argument("--to", choices=("ours", "reference"), required=True, help="target key layout")
    parser.add_argument("--out", type=Path, required=True, help="output file (.safetensors or .bin)")
    args = parser.parse_args(argv)
    tensors, report = convert_files(args.inputs, args.to)
    if args.out.suffix == ".bin":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.contiguous() for k, v in tensors.items()}, str(args.out))
    else:
        write_state_dict(tensors, args.out, metadata={"format": f"crab-{args.to}"})
    report["out"] = str(args.out)
    report["dropped"] = len(report["dropped"])
    sys.stdout.write(json.dumps(report) + "\n")
    return 0
