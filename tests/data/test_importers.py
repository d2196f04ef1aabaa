"""Importers on miniature copies of each official layout (tests/data/layouts.py): rows, skipped rows by
reason, relative paths that exist, rows that ``eval``'s manifest checks accept, the CLI, and speed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crab_core import cli
from crab_core.data import import_benchmark
from crab_core.eval_manifest import read_manifest
from tests.data import layouts

MEDIA_KEYS = ("video", "audio", "image")


def _check(report, expected: dict, root: Path) -> list[dict]:
    """Report counts as expected; every row valid for ``eval``, its paths relative and present."""
    assert dict(report.rows) == expected["rows"], report.summary()
    assert dict(report.problems) == expected["skipped"], report.summary()
    rows = [json.loads(line) for line in Path(report.out).read_text().splitlines()]
    assert len(rows) == report.written and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        paths = [r[k] for k in MEDIA_KEYS if k in r] + ([r["gt"]["mask"]] if "mask" in r["gt"] else [])
        assert paths and all(not p.startswith("/") and ".." not in p for p in paths), r
        assert all((root / p).is_file() for p in paths), r
        assert r["output"]
    errors: list[dict] = []
    read_manifest(report.out, errors=errors, media_root=root)
    assert errors == []
    saved = json.loads(Path(report.out + ".report.json").read_text())
    assert saved["written"] == report.written and saved["skipped"] == expected["skipped"]
    return rows


def test_ave(tmp_path, real_media_dir):
    expected = layouts.build_ave(tmp_path, real_media_dir)
    rows = _check(import_benchmark("ave", tmp_path, "test"), expected, tmp_path)
    first = rows[0]
    assert first["video"] == "AVE/-67UNKFmRLk.mp4" and first["gt"]["range"] == [0, 8]
    assert first["gt"]["segments"] == ["Male speech, man speaking"] * 8 + ["background"] * 2
    assert "<event> Male speech, man speaking </event>" in first["output"]
    assert rows[1]["id"] != rows[2]["id"]  # the same VideoID on two lines
    assert Path(tmp_path / "crab-ave-test.jsonl").is_file()  # default --out: inside the root


def test_ave_under_its_release_folder(tmp_path, real_media_dir):
    expected = layouts.build_ave(tmp_path / "AVE_Dataset", real_media_dir)
    rows = _check(
        import_benchmark("ave", tmp_path, "val", tmp_path / "m.jsonl"),
        {**expected, "rows": {"ave": 1}, "skipped": {}},
        tmp_path,
    )
    assert rows[0]["video"] == "AVE_Dataset/AVE/-67UNKFmRLk.mp4"


def test_avvp(tmp_path, real_media_dir):
    expected = layouts.build_avvp(tmp_path, real_media_dir)
    rows = _check(import_benchmark("avvp", tmp_path, "test"), expected, tmp_path)
    by_id = {r["id"]: r for r in rows}
    gt = by_id["avvp-KSRjje7GH44_60_70"]["gt"]
    assert gt["audio"] == [{"event": "Blender", "ranges": [[8, 10]]}, {"event": "Speech", "ranges": [[0, 8]]}]
    assert gt["visual"] == [{"event": "Blender", "ranges": [[0, 2], [5, 10]]}]
    assert by_id["avvp-4YdbENYcIyE_23_33"]["video"] == "LLP_dataset/video/4YdbENYcIyE.mp4"


def test_music_avqa(tmp_path, real_media_dir):
    expected = layouts.build_music_avqa(tmp_path, real_media_dir)
    rows = _check(import_benchmark("music-avqa", tmp_path, "test"), expected, tmp_path)
    assert rows[0]["question"] == "What is the left instrument of the first sounding instrument?"
    assert rows[0]["gt"] == {"answer": "saxophone", "question_type": "Audio-Visual/Location"}
    assert rows[1]["gt"]["question_type"] == "Audio/Counting"


@pytest.mark.parametrize(
    "bench,split,key",
    [("s4", "test", "s4"), ("ms3", "test", "ms3"), ("avss", "test", "avss"), ("s4", "train", "s4-train")],
)
def test_avsbench_semantic(tmp_path, real_media_dir, bench, split, key):
    expected = layouts.build_avsbench_semantic(tmp_path, real_media_dir)[key]
    rows = _check(import_benchmark(bench, tmp_path, split), expected, tmp_path)
    assert [r["frame_index"] for r in rows[:5]] == list(range(len(rows[:5])))
    if bench == "avss":
        assert {r["gt"]["mask_format"] for r in rows} == {"palette"}
        assert all("/labels_rgb/" in r["gt"]["mask"] for r in rows)
    else:
        assert rows[0]["gt"]["object"] in ("dog", "guitar") and rows[0]["audio"].endswith("/audio.wav")
    if bench == "ms3":  # frame 3 has no labels_semantic: its labels_rgb is the binary mask
        assert rows[3]["gt"]["mask"].endswith("labels_rgb/3.png") and rows[2]["gt"]["mask"].endswith(
            "labels_semantic/2.png"
        )


@pytest.mark.parametrize("bench", ["s4", "ms3"])
def test_avsbench_object(tmp_path, real_media_dir, bench):
    expected = layouts.build_avsbench_object(tmp_path, real_media_dir)[bench]
    rows = _check(import_benchmark(bench, tmp_path, "test"), expected, tmp_path)
    assert [r["frame_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["image"].endswith("_1.png") and rows[4]["gt"]["mask"].endswith("_5.png")


@pytest.mark.parametrize("split", ["test", "test_s", "test_u", "test_n"])
def test_ref_avs(tmp_path, real_media_dir, split):
    expected = layouts.build_ref_avs(tmp_path, real_media_dir)[split]
    rows = _check(import_benchmark("ref-avs", tmp_path, split), expected, tmp_path)
    null = [r for r in rows if r["gt"]["null"]]
    assert len(null) == (10 if split in ("test", "test_n") else 0)
    assert all(r["gt"]["object"] is None and r["meta"]["subset"] == "test_n" for r in null)
    if split == "test_s":
        assert (
            rows[0]["gt"]["object"] == "cat" and rows[0]["question"] == "The object making the loudest sound."
        )
        assert rows[0]["image"] == "media/--KCIeTv6PM_14000_24000/frames/0.jpg"


def _data_cli(capsys, *argv):
    rc = cli.main(["data", "import", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_report_strict_and_errors(tmp_path, real_media_dir, capsys):
    layouts.build_ave(tmp_path / "ave", real_media_dir)
    out = tmp_path / "manifests" / "ave.jsonl"
    rc, text, _ = _data_cli(capsys, "ave", "--root", str(tmp_path / "ave"), "--out", str(out))
    assert rc == 0 and "3 rows written" in text and "4 row(s) skipped (3 malformed, 1 missing)" in text
    assert "testSet.txt:7: start 7 >= end 3" in text and "--media-root" in text
    rc, _, _ = _data_cli(capsys, "ave", "--root", str(tmp_path / "ave"), "--out", str(out), "--strict")
    assert rc == 1
    rc, text, _ = _data_cli(capsys, "ave", "--root", str(tmp_path / "ave"), "--out", str(out), "--json")
    assert json.loads(text)["skipped"] == {"malformed": 3, "missing": 1}
    for argv, message in [
        (("dance", "--root", str(tmp_path)), "unknown benchmark 'dance'"),
        (("av-uie", "--root", str(tmp_path)), "av-uie: not supported"),
        (("ave", "--root", str(tmp_path / "nope")), "not a folder"),
        (("ave", "--root", str(tmp_path)), "no testSet.txt"),
        (("ave", "--root", str(tmp_path / "ave"), "--split", "dev"), "unknown split 'dev'"),
        (
            ("avvp", "--root", str(tmp_path), "--split", "train"),
            "dense audio / visual labels for val and test only",
        ),
    ]:
        rc, _, err = _data_cli(capsys, *argv)
        assert rc == 1 and err.startswith("error: ") and message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_all_rows_missing_is_an_error_and_leaves_no_manifest(tmp_path, capsys):
    (tmp_path / "testSet.txt").write_text("Dog&abc&good&0&10\nDog&abd&good&0&10\n")
    rc, _, err = _data_cli(capsys, "ave", "--root", str(tmp_path))
    assert rc == 1 and "no row could be imported (2 skipped)" in err
    (tmp_path / "AVVP_test_pd.csv").write_text("filename\tevent_labels\n")
    rc, _, err = _data_cli(capsys, "avvp", "--root", str(tmp_path))
    assert rc == 1 and "no AVVP_eval_audio.csv" in err
    assert not (tmp_path / "crab-avvp-test.jsonl").exists() and not list(tmp_path.glob("*.partial"))


def test_thousands_of_rows_in_seconds(tmp_path):
    """5000 AVE lines (every video present) import in well under the issue's 'seconds'."""
    (tmp_path / "AVE").mkdir()
    lines = []
    for i in range(5000):
        (tmp_path / "AVE" / f"v{i:05d}.mp4").write_bytes(b"x")
        lines.append(f"Dog&v{i:05d}&good&{i % 5}&{5 + i % 5}")
    (tmp_path / "testSet.txt").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    report = import_benchmark("ave", tmp_path, "test")
    assert report.written == 5000 and report.skipped == 0
    assert time.perf_counter() - t0 < 5.0


def test_make_videos_for_releases_of_frames(tmp_path, real_media_dir, capsys):
    """S4 / MS3 (AVSBench-semantic) and Ref-AVS ship frames: --make-videos gives each clip a 1-fps video,
    so the rows run the reference's video + audio test prompt."""
    from crab_core.media.video import read_video
    from crab_core.pipeline_types import resolve_inputs
    from crab_core.tasks import TASKS
    from crab_core.tasks.prompts import PROMPT_CHOICES

    layouts.build_avsbench_semantic(tmp_path / "avs", real_media_dir)
    layouts.build_ref_avs(tmp_path / "ref", real_media_dir)
    for bench, root, frames in (("s4", "avs", 5), ("ms3", "avs", 5), ("ref-avs", "ref", 10)):
        report = import_benchmark(bench, tmp_path / root, "test", make_videos=True)
        rows = [json.loads(x) for x in Path(report.out).read_text().splitlines()]
        assert rows and all(r["video"].startswith("crab_videos/") for r in rows)
        clip = read_video(tmp_path / root / rows[0]["video"], frames + 5, 32)[0]
        assert clip.shape[0] == frames
        variant = resolve_inputs(rows[0]["task"], rows[0]["video"], rows[0]["image"], 0)[0]
        assert (
            variant == PROMPT_CHOICES[rows[0]["task"]][0]
            and "video" in TASKS[rows[0]["task"]].variant(variant).blocks
        )
    made = (tmp_path / "avs" / "crab_videos" / "v1s" / "_4R3qHn1n50_0_5000.mp4").stat().st_mtime_ns
    import_benchmark("s4", tmp_path / "avs", "test", make_videos=True)  # made once, then reused
    assert (tmp_path / "avs" / "crab_videos" / "v1s" / "_4R3qHn1n50_0_5000.mp4").stat().st_mtime_ns == made
    rc, _, err = _data_cli(capsys, "ave", "--root", str(tmp_path), "--make-videos")
    assert rc == 1 and "--make-videos: only for s4, ms3, ref-avs" in err
