"""``synth`` argument validation: one-line errors, nothing written, nothing allocated (issue #14)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from crab_core.errors import SynthError
from crab_core.synthav.generate import MAX_SAMPLES, generate_split, main_synth, prepare_out_dir
from tests._helpers import run_memory_capped


def _synth(capsys, *args):
    try:
        rc = main_synth(list(args))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--num", "0"], "argument --num: must be an integer in [1, 100000], got 0"),
        (["--num", "-5"], "argument --num: must be an integer in [1, 100000], got -5"),
        (["--num", str(10**12)], "argument --num: must be an integer in [1, 100000], got 1000000000000"),
        (["--num", "ten"], "argument --num: expected an integer, got 'ten'"),
        (
            ["--num", "1", "--image-size", "100000"],
            "argument --image-size: must be an even integer in [32, 1024], got 100000",
        ),
        (
            ["--num", "1", "--image-size", "33"],
            "argument --image-size: must be an even integer in [32, 1024], got 33",
        ),
        (["--num", "1", "--workers", "0"], "argument --workers: must be an integer in [1, 64], got 0"),
        (["--num", "1", "--seed", "-1"], "argument --seed: must be an integer in [0, 16777215], got -1"),
        (["--num", "1", "--tasks", " , "], "--tasks: no task names given"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, expect):
    out = tmp_path / "out"
    rc, err = _synth(capsys, "--out", str(out), "--split", "train", *args)
    assert rc == 2 and err[-1].endswith(expect), err
    assert not out.exists()  # refused before anything was created


def test_out_is_a_file_or_under_one(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    rc, err = _synth(capsys, "--out", str(f), "--split", "train", "--num", "1")
    assert rc == 2 and err[-1].endswith(f"argument --out: output folder {f} is a file, not a folder")
    rc, err = _synth(capsys, "--out", str(f / "sub"), "--split", "train", "--num", "1")
    assert rc == 2 and err[-1].endswith(f"is inside {f}, which is a file, not a folder")
    assert f.read_text() == "x"


def test_read_only_out_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes through mode bits: make the write probe fail as EROFS would

        def refuse(*_, **__):
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    try:
        rc, err = _synth(capsys, "--out", str(ro), "--split", "train", "--num", "1")
    finally:
        ro.chmod(0o755)
    assert rc == 2 and err[-1].startswith("python -m crab_core synth: error: argument --out: output folder")
    assert "cannot be created or written (" in err[-1]
    assert list(ro.iterdir()) == []


def test_library_bounds(tmp_path):
    for kwargs, expect in [
        ({"num": 0}, r"num must be an integer in \[1, 100000\], got 0"),
        ({"num": 10**12}, r"num must be an integer in \[1, 100000\]"),
        ({"num": 1, "image_size": 100000}, r"image_size must be an integer in \[32, 1024\]"),
        ({"num": 1, "image_size": 34.0}, r"image_size must be an integer"),
        ({"num": 1, "workers": 0}, r"workers must be an integer in \[1, 64\]"),
    ]:
        with pytest.raises(SynthError, match=expect):
            generate_split(tmp_path / "lib", "train", seed=0, **kwargs)
    assert not (tmp_path / "lib").exists()
    with pytest.raises(SynthError, match="is a file, not a folder"):
        prepare_out_dir(__file__)


def test_one_sample_into_a_new_nested_folder(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    rc, _ = _synth(
        capsys, "--out", str(out), "--split", "val", "--num", "1", "--tasks", "ave", "--image-size", "32"
    )
    assert rc == 0
    rows = [json.loads(x) for x in (out / "val" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["task"] == "ave" and (out / "val" / rows[0]["video"]).is_file()
    assert not [p for p in (out / "val").iterdir() if p.name.startswith(".write-test-")]


_CAPPED = """
import sys
from crab_core.errors import SynthError
from crab_core.synthav.generate import generate_split, main_synth
for args in (["--num", str(10**12)], ["--num", "1", "--image-size", "100000"]):
    try:
        main_synth(["--out", {out!r}, "--split", "train", *args])
    except SystemExit as exc:
        print("EXIT", exc.code)
for kwargs in ({{"num": 10**12}}, {{"num": 1, "image_size": 100000}}):
    try:
        generate_split({out!r}, "train", seed=0, **kwargs)
    except SynthError as exc:
        print("REFUSED", exc)
"""


def test_huge_requests_refused_under_a_memory_cap(tmp_path):
    """--num 10^12 used to reach 9.7 GB before a MemoryError; now refused in a 1.5 GB address space."""
    proc = run_memory_capped(_CAPPED.format(out=str(tmp_path / "o")), int(1.5 * 1024**3), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["EXIT 2", "EXIT 2"], proc.stdout + proc.stderr[-1000:]
    assert proc.stdout.count("REFUSED") == 2 and "MemoryError" not in proc.stderr
    assert not (tmp_path / "o").exists()
    assert MAX_SAMPLES == 100_000
