"""verify-reference passes on the shared fixtures and fails on a perturbed copy."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from crab_core.checkpoint.verify import main as verify_main
from crab_core.checkpoint.verify import run_checks
from tests._helpers import REPO, writable_copy


@pytest.fixture(scope="module")
def checks(fixtures_dir):
    return run_checks(fixtures_dir)


def test_every_component_within_tolerance(checks):
    comps = {c.component for c in checks}
    assert comps == {
        "a_ilora",
        "b_vl_projector",
        "c_al_projector",
        "d_fbank",
        "d_beats",
        "e_clip",
        "e_image_preprocess",
        "f_seg",
        "g_end2end",
        "h_avs_forward",
    }
    bad = [c for c in checks if not c.ok(1e-4)]
    assert not bad, bad
    # the fixture README's acceptance: atol 1e-5 for float tensors; the fbank (an independent
    # implementation of Kaldi's) "should expect ~1e-5 (up to ~3e-4 in the lowest mel bins)"
    assert max(c.max_abs for c in checks if c.component != "d_fbank") < 1e-5
    assert max(c.max_abs for c in checks if c.component == "d_fbank") < 3e-4


def test_generation_and_routing_are_checked(checks):
    names = {c.name for c in checks}
    assert "generate.sequences" in names and "generate.step_logits" in names
    assert sum(n.startswith("route_weight.") for n in names) == 14
    assert "prepare.mask_token_mask" in names


def test_cli_exit_codes(fixtures_dir, tmp_path, capsys):
    assert verify_main([str(fixtures_dir)]) == 0
    out = capsys.readouterr().out
    assert "h_avs_forward" in out and "0 failed" in out
    # a perturbed golden must make the command fail
    bad = writable_copy(fixtures_dir, tmp_path / "fx")
    path = bad / "d_fbank" / "outputs.safetensors"
    golden = load_file(str(path))
    golden["fbank_normalized"] = golden["fbank_normalized"] + 0.01
    save_file(golden, str(path))
    assert verify_main([str(bad)]) == 1
    # a missing component folder is a failure too
    shutil.rmtree(bad / "e_clip")
    assert verify_main([str(bad)]) == 1


@pytest.mark.slow
def test_module_entry_point(fixtures_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "crab_core", "verify-reference", str(fixtures_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "g_end2end" in proc.stdout
