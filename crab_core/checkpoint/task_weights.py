"""Per-task weight sets: the released AVS and AVSS files served side by side by one model.

The reference serves AVSS with ``avss_finetune_weights.bin`` and S4 / MS3 / Ref-AVS with
``avs_finetune_weights.bin``; both hold the whole ``seg_module`` and the full ``embed_tokens`` /
``lm_head`` (crab-reference.md section 5), and other tasks use neither (step 6 of the reference's
loading order: "for AVS tasks only"). Loading both into one model would let the later file overwrite
the earlier, so :func:`load_task_weights` keeps a copy of each set's tensors (on the model's device,
in its dtype) and :meth:`TaskWeights.apply` copies the set a task needs into the model in place. A
switch copies only the tensors the seg files hold (about 0.58 GB in bf16 for crab-7b), never the
model; callers hold the model's lock while switching (the pipeline switches inside ``prepare``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from .convert import LoadReport, reference_to_ours
from .io import read_state_dict

log = logging.getLogger(__name__)

BASE = "base"
#: Which set each segmentation task uses (the reference's choice); other tasks use :data:`BASE`.
SET_TASKS: dict[str, tuple[str, ...]] = {"avs": ("s4", "ms3", "ref-avs"), "avss": ("avss",)}


def seg_set_name(path: str | Path) -> str:
    """``"avss"`` when the file's path names AVSS (``avss_finetune_weights.bin`` or a folder such as
    ``avss_ckpt/finetune_weights.bin``), else ``"avs"``."""
    return "avss" if "avss" in str(path).lower() else "avs"


def is_seg_file(path: str | Path) -> bool:
    """Whether a reference-format file holds segmentation weights (``seg_module.*`` keys).

    ``.bin`` files are memory-mapped, so this reads the key list, not the tensors.
    """
    sd = read_state_dict(path)
    return any(".seg_module." in k or k.startswith(("seg_module.", "model.seg_module.")) for k in sd)


@dataclass
class TaskWeights:
    """Weight sets of one model and which set each task uses.

    Attributes:
        sets: ``{set name: {our key: tensor}}``; :data:`BASE` holds the values before any seg file,
            for every key some set holds.
        sources: ``{set name: file}`` of each seg set.
        active: the set the model holds now.
    """

    sets: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    active: str = BASE

    def names(self) -> list[str]:
        return list(self.sets)

    def set_for(self, task: str) -> str:
        """The set ``task`` runs with: its own when loaded, the other seg set for a seg task whose own
        set is missing (logged), else :data:`BASE`."""
        wanted = next((name for name, tasks in SET_TASKS.items() if task in tasks), BASE)
        if wanted == BASE or wanted in self.sets:
            return wanted
        other = next((n for n in self.sets if n != BASE), BASE)
        if other != BASE:
            log.warning("no %s weights loaded: %s runs with the %s file", wanted, task, other)
        return other

    def apply(self, model: torch.nn.Module, task: str) -> str:
        """Put the set ``task`` needs into ``model`` (in place; nothing is copied when it is already
        active). Returns the set's name."""
        name = self.set_for(task)
        if name == self.active:
            return name
        state = model.state_dict()
        chosen, base = self.sets[name], self.sets[BASE]
        with torch.no_grad():
            for key, value in base.items():
                state[key].copy_(chosen.get(key, value))
        log.info("weights for %s: %s set (%s)", task, name, self.sources.get(name, "no seg file"))
        self.active = name
        return name

    def to(self, device: str | torch.device) -> TaskWeights:
        """Move every stored set to ``device`` (with the model, once, at start-up)."""
        self.sets = {n: {k: v.to(device) for k, v in s.items()} for n, s in self.sets.items()}
        return self

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for s in self.sets.values() for v in s.values())


def _file_keys(path: str | Path) -> list[str]:
    ours, _, _ = reference_to_ours(read_state_dict(path))
    return list(ours)


def load_task_weights(
    model: torch.nn.Module, seg_files: Sequence[str | Path], report: LoadReport | None = None
) -> TaskWeights:
    """Load each seg file into ``model`` in turn and keep every set (see the module docstring).

    Call after the base files (``finetune_weights.bin``) are loaded. Afterwards the model holds the
    last file's set. Files are assigned by :func:`seg_set_name`; two files of one set is an error.

    Raises:
        CheckpointError: two files for one set, or any file that does not load cleanly.
    """
    from .official import load_reference_files

    report = report or LoadReport()
    by_set: dict[str, str] = {}
    for path in seg_files:
        name = seg_set_name(path)
        if name in by_set:
            raise CheckpointError(
                f"two {name} files ({by_set[name]}, {path}); give one avs and one avss file "
                "(a path that names 'avss' is the AVSS file)"
            )
        by_set[name] = str(path)
    tw = TaskWeights(sources=dict(by_set))
    if not by_set:
        return tw
    keys = sorted({k for p in by_set.values() for k in _file_keys(p)})
    state = model.state_dict()
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{len(missing)} seg-file tensors the model does not have, e.g. {missing[0]}")
    tw.sets[BASE] = {k: state[k].detach().clone() for k in keys}
    for name, path in by_set.items():
        if name != next(iter(by_set)):
            for k, v in tw.sets[BASE].items():  # each file goes on top of the base values
                state[k].data.copy_(v)
        part = load_reference_files(model, [path])
        tw.sets[name] = {k: state[k].detach().clone() for k in keys if k in set(part.loaded)}
        report.sources += part.sources
        report.loaded = sorted(set(report.loaded) | set(part.loaded))
        report.dropped += part.dropped
        report.notes += [n for n in part.notes if n not in report.notes]
    tw.active = list(by_set)[-1]
    report.missing = [k for k in report.missing if k not in set(report.loaded)]
    report.notes.append(
        "per-task weights: "
        + ", ".join(f"{n} ({', '.join(SET_TASKS[n])}) from {Path(p).name}" for n, p in by_set.items())
        + "; other tasks use neither seg file (as the reference)"
    )
    log.info("task weight sets %s: %.2f GB kept", tw.names(), tw.nbytes() / 1e9)
    return tw
