"""SynthAV file path: byte-determinism, decodable media equal to the in-memory arrays, balance report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crab_core.synthav import TASKS, clip_seconds, generate_split, main_synth, render_sample

decord = pytest.importorskip("decord")
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
SIZE = 64


@pytest.fixture(scope="module")
def split_dirs(tmp_path_factory):
    a = tmp_path_factory.mktemp("a")
    b = tmp_path_factory.mktemp("b")
    ma, ra = generate_split(a, "train", len(TASKS), seed=4, image_size=SIZE)
    mb, rb = generate_split(b, "train", len(TASKS), seed=4, image_size=SIZE, workers=2)
    return (ma, ra), (mb, rb)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_same_seed_same_bytes(split_dirs):
    (ma, ra), (mb, rb) = split_dirs
    assert ma.name == "manifest.jsonl" and ma.parent.name == "train"
    assert ma.read_bytes() == mb.read_bytes() and ra == rb
    for row in _rows(ma):
        for key in ("audio", "image"):
            if key in row:
                assert (ma.parent / row[key]).read_bytes() == (mb.parent / row[key]).read_bytes()
        if "mask" in row["gt"]:
            assert (ma.parent / row["gt"]["mask"]).read_bytes() == (
                mb.parent / row["gt"]["mask"]
            ).read_bytes()
        idx = list(range(0, 8 * clip_seconds(row["task"]), 8))
        va = decord.VideoReader(str(ma.parent / row["video"])).get_batch(idx).asnumpy()
        vb = decord.VideoReader(str(mb.parent / row["video"])).get_batch(idx).asnumpy()
        assert np.array_equal(va, vb)


def test_different_seed_different_data(tmp_path, split_dirs):
    (ma, _), _ = split_dirs
    mc, _ = generate_split(tmp_path, "train", 2, seed=5, image_size=SIZE, tasks=["ave", "avqa"])
    seeds_a = {r["seed"] for r in _rows(ma)}
    rows_c = _rows(mc)
    assert not seeds_a & {r["seed"] for r in rows_c}
    assert [r["output"] for r in rows_c] != [r["output"] for r in _rows(ma)[:2]]


def test_files_decode_and_match_arrays(split_dirs):
    (ma, _), _ = split_dirs
    root = ma.parent
    for row in _rows(ma):
        assert set(row) >= {"id", "task", "video", "audio", "output", "gt", "seed", "split"}
        s = render_sample(row["seed"], row["task"], SIZE)
        assert row["output"] == s.output and row.get("question") == s.question
        n = clip_seconds(row["task"])
        assert s.frames.shape[0] == n == (5 if row["task"] in ("s4", "ms3", "arig") else 10)
        vr = decord.VideoReader(str(root / row["video"]))
        assert len(vr) == 8 * n and abs(vr.get_avg_fps() - 8) < 1e-6
        frames = vr.get_batch(list(range(0, 8 * n, 8))).asnumpy()
        assert frames.shape == s.frames.shape
        assert np.abs(frames.astype(int) - s.frames).mean() < 4.0  # lossy H.264 copy of the same frames
        ar = decord.AudioReader(str(root / row["video"]), sample_rate=16000, mono=True)
        assert 16000 * n - 1000 <= ar.shape[1] <= 16000 * n + 2048  # the mp4 has its n-second AAC track
        wav, sr = sf.read(root / row["audio"], dtype="float32")
        assert sr == 16000 and wav.shape == (16000 * n,) and np.abs(wav - s.audio).max() < 1e-4
        if row["task"] in ("arig", "s4", "ms3", "avss", "ref-avs"):
            img = np.asarray(Image.open(root / row["image"]))
            assert 0 <= row["frame_index"] < n and np.array_equal(img, s.frames[row["frame_index"]])
        if "mask" in row["gt"]:
            mask = np.asarray(Image.open(root / row["gt"]["mask"]))
            if row["task"] == "avss":
                assert np.array_equal(mask, s.mask)
            else:
                assert np.array_equal(mask > 0, s.mask > 0)


def test_balance_report_sums(split_dirs):
    (ma, report), _ = split_dirs
    on_disk = json.loads((ma.parent / "balance.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    rows = _rows(ma)
    assert report["num"] == len(rows) == sum(e["n"] for e in report["tasks"].values())
    for task, entry in report["tasks"].items():
        sel = [r for r in rows if r["task"] == task]
        assert sum(entry["answers"].values()) == entry["n"] == len(sel)
        assert sum(entry["classes"].values()) == sum(len(r["meta"]["objects"]) for r in sel)
        assert entry["majority_share"] == max(entry["answers"].values()) / entry["n"]
        for qt in entry.get("question_types", {}).values():
            assert sum(qt["answers"].values()) == qt["n"]


def test_cli(tmp_path):
    rc = main_synth(
        [
            "--out",
            str(tmp_path),
            "--split",
            "test-compositional",
            "--num",
            "2",
            "--seed",
            "1",
            "--tasks",
            "caption,ave",
            "--image-size",
            "32",
        ]
    )
    assert rc == 0
    rows = _rows(tmp_path / "test-compositional" / "manifest.jsonl")
    assert [r["task"] for r in rows] == ["caption", "ave"]
    assert all(r["split"] == "test-compositional" for r in rows)
