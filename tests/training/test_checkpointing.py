"""Checkpoints survive a crash at every point of a save; resume refuses another recipe configuration."""

import json

import pytest
import torch

from crab_core.errors import CheckpointError
from crab_core.training import checkpointing as ckpt
from crab_core.training.recipe import DataSpec, Phase, Recipe, micro_config
from crab_core.training.trainer import Trainer


class Crash(Exception):
    """Stands for the process dying."""


def _recipe(lr: float = 1e-3, workers: int = 1) -> Recipe:
    phase = Phase(
        "fit", 3, ("lora", "vl_projector", "al_projector"), {"ave": 1.0, "s4": 1.0}, lr=lr, batch_size=1
    )
    return Recipe(
        "ckpt",
        micro_config(),
        DataSpec(synth_per_task=1, val_per_task=0, workers=workers),
        (phase,),
        checkpoint_every=1,
        log_every=1,
        tokenizer_samples=2,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt-cache")


def _trainer(out, cache, recipe=None, **kw):
    t = Trainer(recipe or _recipe(), out, progress=False, cache_dir=cache, **kw)
    t.setup()
    return t


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache):
    t = _trainer(tmp_path_factory.mktemp("full"), cache)
    assert t.train()
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def _crash_second_save(monkeypatch, point: str) -> None:
    """Make the second save (step 2) die at ``point`` of the write / rename / delete sequence."""
    saves = {"n": 0}
    write, rename, remove = ckpt.write_state, ckpt._rename, ckpt._remove

    def write_state(folder, state):
        saves["n"] += 1
        if saves["n"] == 2 and point == "writing":
            (folder / ckpt.STATE_FILE).with_suffix(".part").write_text('{"step": 2, "trunc')
            raise Crash
        write(folder, state)

    def _rename(src, dst):
        if saves["n"] == 2 and (point, src.name) in {("aside", "checkpoint"), ("swap", "checkpoint.tmp")}:
            raise Crash
        rename(src, dst)

    def _remove(folder):
        if saves["n"] == 2 and folder.name == "checkpoint.old" and point in ("delete", "mid-delete"):
            if point == "mid-delete":
                for f in sorted(folder.iterdir())[:2]:
                    f.unlink()
            raise Crash
        remove(folder)

    monkeypatch.setattr(ckpt, "write_state", write_state)
    monkeypatch.setattr(ckpt, "_rename", _rename)
    monkeypatch.setattr(ckpt, "_remove", _remove)


#: crash point -> the step the run resumes from (the newest complete checkpoint left behind)
POINTS = {"writing": 1, "aside": 1, "swap": 2, "delete": 2, "mid-delete": 2}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_crash_at_any_point_of_a_save_resumes_to_the_same_model(
    tmp_path, cache, uninterrupted, monkeypatch, point
):
    crashed = _trainer(tmp_path, cache)
    _crash_second_save(monkeypatch, point)
    with pytest.raises(Crash):
        crashed.train()
    monkeypatch.undo()
    assert ckpt.recover(tmp_path) == tmp_path / "checkpoint"
    assert json.loads((tmp_path / "checkpoint" / ckpt.STATE_FILE).read_text())["step"] == POINTS[point]
    resumed = _trainer(tmp_path, cache)
    assert resumed.train(resume=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint"]
    state = resumed.model.state_dict()
    for k, v in uninterrupted.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=1e-6, msg=k)


def test_recover_without_any_complete_checkpoint(tmp_path):
    (tmp_path / "checkpoint.tmp").mkdir()  # a first save that died while writing
    assert ckpt.recover(tmp_path) is None
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        Trainer(_recipe(), tmp_path, progress=False)._read_state()


def test_resume_names_what_differs_in_the_recipe(tmp_path, cache):
    t = _trainer(tmp_path, cache, max_minutes=0.0)
    assert not t.train()  # one step, checkpointed
    other = _trainer(tmp_path, cache, recipe=_recipe(lr=2e-3, workers=2))  # workers may differ
    with pytest.raises(CheckpointError) as err:
        other.train(resume=True)
    msg = str(err.value)
    assert "phases[0].lr: 0.001 in the checkpoint, 0.002 now" in msg and "workers" not in msg
    assert "\n" not in msg
    state = json.loads((tmp_path / "checkpoint" / ckpt.STATE_FILE).read_text())
    state["recipe"] = "another"
    (tmp_path / "checkpoint" / ckpt.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="from recipe 'another', not 'ckpt'"):
        _trainer(tmp_path, cache).train(resume=True)


def test_checkpoints_written_before_the_recipe_was_stored_resume_by_name(tmp_path, cache, caplog):
    t = _trainer(tmp_path, cache, max_minutes=0.0)
    assert not t.train()
    path = tmp_path / "checkpoint" / ckpt.STATE_FILE
    state = json.loads(path.read_text())
    del state["recipe_config"]
    path.write_text(json.dumps(state))
    assert _trainer(tmp_path, cache).train(resume=True)
    assert "only its name was checked" in caplog.text


def test_recipe_diff_lists_nested_fields():
    a = {"model": {"llm": {"hidden_size": 64}}, "phases": [{"lr": 1.0}], "data": {"workers": 1}}
    b = {"model": {"llm": {"hidden_size": 32}}, "phases": [{"lr": 1.0}, {"lr": 2.0}], "data": {"workers": 4}}
    assert ckpt.recipe_diff(a, b) == [
        "model.llm.hidden_size: 64 in the checkpoint, 32 now",
        "phases.len: 1 in the checkpoint, 2 now",
        "phases[1].lr: absent in the checkpoint, 2.0 now",
    ]


def test_crab_tiny_recipe_is_the_shipped_one():
    """``--recipe crab-tiny`` is exactly what trained the shipped crab-tiny (its training.json): every
    recorded field, and each phase's task order (the order the sampler draws tasks in). Of the fields
    added since the shipped run (absent from its file), ``avqa_questions``, ``avqa_variant_types``,
    ``avqa_checked_questions``, ``avvp_layout``, ``avqa_layout``, ``extra_per_task`` and each
    phase's ``lm_weighting`` and ``flag_weight`` must be off (0, other types, 0, the reference layouts,
    none, per token, 0), and ``avss_balance`` was then a field of the model's seg config
    (``config.json``: 0.5)."""
    from crab_core.training.recipe import crab_tiny_recipe
    from tests._helpers import REPO

    shipped = json.loads((REPO / "assets" / "crab-tiny" / "training.json").read_text())["recipe"]
    now = json.loads(json.dumps(crab_tiny_recipe().to_dict()))
    rows = [r for r in ckpt.recipe_diff(shipped, now) if not r.startswith("model")]
    added = [r for r in rows if "absent in the checkpoint" in r]
    assert rows == added, rows
    assert "data.avqa_questions: absent in the checkpoint, 0 now" in added
    assert "data.avvp_layout: absent in the checkpoint, 'ranges' now" in added
    assert "data.avqa_variant_types: absent in the checkpoint, 'other' now" in added
    assert "data.avqa_layout: absent in the checkpoint, 'reference' now" in added
    assert "data.avqa_checked_questions: absent in the checkpoint, 0 now" in added
    assert now["data"]["extra_per_task"] == {}
    balance = json.loads((REPO / "assets" / "crab-tiny" / "config.json").read_text())["seg"]["avss_balance"]
    assert [p["avss_balance"] for p in now["phases"]] == [0.0, 0.0, 0.0, 0.0, balance]
    assert [p["lm_weighting"] for p in now["phases"]] == ["token"] * len(now["phases"])
    assert [p["flag_weight"] for p in now["phases"]] == [0.0] * len(now["phases"])
    assert len(added) == 5 + 3 * len(now["phases"]) + ("data.extra_per_task" in " ".join(added)), added
    for old, new in zip(shipped["phases"], now["phases"], strict=True):
        assert list(old["tasks"]) == list(new["tasks"]), old["name"]


def test_train_refuses_to_start_over_a_checkpoint(tmp_path, capsys):
    """Forgetting --resume must not replace a run's checkpoint at its first save (nothing is lost)."""
    from crab_core.cli import main as cli_main
    from crab_core.training import checkpointing as ckpt
    from crab_core.training.cli import _refuse_to_restart_over

    out = tmp_path / "run"
    _refuse_to_restart_over(out, resume=False, overwrite=False)  # a new folder: fine
    final = ckpt.paths(out)[0]
    final.mkdir(parents=True)
    ckpt.write_state(final, {"recipe": "smoke", "phase": 2, "step": 150})
    before = (final / ckpt.STATE_FILE).read_bytes()
    assert cli_main(["train", "--recipe", "smoke", "--out", str(out), "--cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "holds a checkpoint" in err and "--resume" in err and "--overwrite" in err
    assert (final / ckpt.STATE_FILE).read_bytes() == before
    _refuse_to_restart_over(out, resume=True, overwrite=False)
    _refuse_to_restart_over(out, resume=False, overwrite=True)
