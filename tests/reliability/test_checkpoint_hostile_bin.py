"""A hostile .bin is refused without repeating torch's advice to load it unsafely (issue #14)."""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from crab_core.checkpoint.convert import LoadReport
from crab_core.checkpoint.io import read_state_dict, refusal_message
from crab_core.checkpoint.official import load_beats_checkpoint
from crab_core.errors import CheckpointError

UNSAFE_ADVICE = (
    "weights_only",
    "safe_globals",
    "trust the source",
    "if you trust",
    "arbitrary code",
    "false",
)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _write(path, payload, protocol=2):
    torch.save(payload, path, pickle_protocol=protocol)
    return path


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"w": torch.zeros(2), "x": _RunsCode()}, "system"),  # os.system: a blocked module
        ({"w": torch.zeros(2), "x": argparse.Namespace(a=1)}, "argparse.Namespace"),  # an unlisted global
        ({"w": torch.zeros(2), "x": _RunsCode()}, "Unsupported operand"),  # protocol 4: refused earlier
    ],
)
def test_hostile_bin_refused_without_unsafe_hint(tmp_path, capfd, payload, reason):
    protocol = pickle.DEFAULT_PROTOCOL if reason == "Unsupported operand" else 2
    path = _write(tmp_path / "finetune_weights.bin", payload, protocol)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused: not a plain tensor checkpoint (")
    assert reason in msg and "\n" not in msg and len(msg) < 400
    assert not [w for w in UNSAFE_ADVICE if w in msg.lower()], msg
    assert "pwned" not in capfd.readouterr().out  # nothing ran


def test_hostile_beats_file_refused_the_same_way(tmp_path):
    path = _write(tmp_path / "BEATs.pt", {"cfg": {}, "model": {"x": _RunsCode()}})
    with pytest.raises(CheckpointError) as err:
        load_beats_checkpoint(torch.nn.Module(), path, LoadReport())
    msg = str(err.value)
    assert "refused" in msg and "system" in msg
    assert not [w for w in UNSAFE_ADVICE if w in msg.lower()], msg


def test_refusal_message_keeps_only_the_reason():
    text = (
        "Weights only load failed. This file can still be loaded, to do so you have two options, do those "
        "steps only if you trust the source of the checkpoint.\n\t(1) In PyTorch 2.6, we changed the default "
        "value of the `weights_only` argument in `torch.load` from `False` to `True`. "
        "Re-running `torch.load` "
        "with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
        "execution.\n\t(2) Alternatively, to load with `weights_only=True` "
        "please check the recommended steps "
        "in the following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL "
        "builtins.exec was not an allowed global by default. Please use "
        "`torch.serialization.add_safe_globals([exec])` to allowlist this global if you trust this class."
    )
    msg = refusal_message("x.bin", RuntimeError(text))
    assert msg == (
        "x.bin: refused: not a plain tensor checkpoint (Unsupported global: GLOBAL builtins.exec); "
        "only tensors are ever loaded from .bin/.pt files, convert trusted files to safetensors"
    )
    # a corrupt-file error without the unpickler line keeps its first informative line
    assert "(PytorchStreamReader failed reading zip archive)" in refusal_message(
        "y.bin", RuntimeError("PytorchStreamReader failed reading zip archive")
    )
