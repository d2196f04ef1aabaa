"""``TaskSpec.mask_kind`` is the one list of seg tasks: the model, the recipe, the mask loss and the
app read it instead of their own copies."""

from __future__ import annotations

import dataclasses

import pytest

from crab_core.errors import TaskError
from crab_core.tasks import TASKS, seg_tasks


def test_mask_kinds_of_the_tasks():
    kinds = {name: spec.mask_kind for name, spec in TASKS.items()}
    assert kinds == {
        "ave": None,
        "avvp": None,
        "avqa": None,
        "arig": None,
        "s4": "binary",
        "ms3": "binary",
        "avss": "classes",
        "ref-avs": "binary",
        "caption": None,
    }
    assert all(spec.needs_mask == (spec.mask_kind is not None) for spec in TASKS.values())
    assert seg_tasks() == ("s4", "ms3", "avss", "ref-avs")
    assert seg_tasks("binary") == ("s4", "ms3", "ref-avs") and seg_tasks("classes") == ("avss",)
    assert seg_tasks("other") == ()


def test_unknown_mask_kind_is_refused():
    with pytest.raises(TaskError, match="mask_kind must be None or one of"):
        dataclasses.replace(TASKS["s4"], mask_kind="palette")


def test_every_user_reads_the_spec():
    from app import present
    from crab_core.model import crab
    from crab_core.model.seg import losses
    from crab_core.training import recipe

    assert crab.SEG_TASKS == recipe.SEG_TASKS == present.SEG_TASKS == seg_tasks()
    assert recipe.ALL_TASKS == tuple(TASKS)
    assert losses.BINARY_TASKS == set(seg_tasks("binary")) and losses.CLASS_TASKS == {"avss"}
