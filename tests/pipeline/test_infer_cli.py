"""``python -m crab_core infer`` options (issue #15): masks at the frame's resolution, overlays, notes,
the out-of-domain warning, help texts, --version; run in-process through ``crab_core.cli.main``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from crab_core import cli, cli_common
from crab_core.pipeline import TINY_DIR
from tests._helpers import REPO


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(capsys, *argv):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


needs_tiny = pytest.mark.skipif(
    not (TINY_DIR / "model.safetensors").is_file(), reason="crab-tiny weights absent"
)


@needs_tiny
def test_s4_image_audio_saves_mask_at_frame_size(capsys, real_media_dir, tmp_path):
    """Done-when of issue #15: AVSBench S4 frame + wav -> a mask PNG of the frame's size (720x540)."""
    s4 = real_media_dir / "s4"
    mask, overlay = tmp_path / "M.png", tmp_path / "O.jpg"
    rc, out, err = _run(
        capsys,
        "infer",
        "--task",
        "s4",
        "--image",
        s4 / "0.jpg",
        "--audio",
        s4 / "audio.wav",
        "--save-mask",
        mask,
        "--save-overlay",
        overlay,
        "--json",
    )
    assert rc == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    with Image.open(s4 / "0.jpg") as frame:
        size = frame.size
    with Image.open(mask) as m:
        assert m.size == size == (720, 540) and m.mode == "L"
        assert set(np.unique(np.asarray(m)).tolist()) <= {0, 255}
    with Image.open(overlay) as o:
        assert o.size == size
    assert (
        res["saved"] == {"mask": str(mask), "overlay": str(overlay)}
        and res["prompt_variant"] == "quick_start"
    )
    assert any("image + audio prompt" in n for n in res["notes"])
    assert res["out_of_domain"].startswith("out of domain: crab-tiny")
    assert "warning: out of domain: crab-tiny" in err and "note: no video given" in err
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


@needs_tiny
def test_avss_from_image_without_frame_index_saves_palette(capsys, real_media_dir, tmp_path):
    avss = real_media_dir / "avss"
    mask = tmp_path / "classes.png"
    rc, out, err = _run(
        capsys,
        "infer",
        "--task",
        "avss",
        "--image",
        avss / "0.jpg",
        "--audio",
        avss / "audio.wav",
        "--save-mask",
        mask,
        "--max-new-tokens",
        "40",
    )
    assert rc == 0, err[-2000:]
    assert "note: no target second given" in err and f"saved mask: {mask}" in out
    with Image.open(mask) as m:
        assert m.mode == "P" and m.size == (1280, 720) and int(np.asarray(m).max()) < 71


@needs_tiny
def test_separate_audio_length_note_on_stderr_and_json(capsys, tmp_path):
    from crab_core.synthav.writer import write_wav

    short = write_wav(tmp_path / "short.wav", np.full(3 * 16000, 0.01, np.float32))
    video = REPO / "assets" / "examples" / "ave.mp4"
    rc, out, err = _run(
        capsys,
        "infer",
        "--task",
        "ave",
        "--video",
        video,
        "--audio",
        short,
        "--max-new-tokens",
        "2",
        "--json",
    )
    assert rc == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert any("short.wav (3.0 s) is shorter than the video ave.mp4 (10.0 s)" in n for n in res["notes"])
    assert "note: the audio file short.wav (3.0 s) is shorter" in err
    assert res["out_of_domain"] is None  # bundled example + a wav written by the SynthAV writer
    rc, out, err = _run(capsys, "infer", "--task", "ave", "--video", video, "--max-new-tokens", "2")
    assert rc == 0 and "warning:" not in err and "note:" not in err  # a SynthAV clip alone: nothing to say


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--task", "ave", "--save-mask", "{tmp}/m.png"], 2, "--save-mask needs a segmentation task"),
        (
            ["--task", "s4", "--save-mask", "{tmp}/m.jpg"],
            1,
            "error: --save-mask m.jpg: the file name must end in .png",
        ),
        (["--task", "s4", "--save-overlay", "{tmp}/o.gif"], 1, "must end in .png or .jpg or .jpeg or .webp"),
        (["--task", "s4", "--save-mask", "{tmp}/no/such/m.png"], 1, "does not exist"),
        (["--task", "s4", "--save-mask", "{tmp}/dir.png"], 1, "is a folder; give a file name"),
    ],
)
def test_output_options_are_checked_before_loading(capsys, tmp_path, monkeypatch, args, code, message):
    (tmp_path / "dir.png").mkdir()

    def no_model(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("crab_core.cli_infer.load_pipeline", no_model)
    argv = [
        "infer",
        "--image",
        REPO / "assets" / "examples" / "s4_mask.png",
        *[a.format(tmp=tmp_path) for a in args],
    ]
    rc, out, err = _run(capsys, *argv)
    assert rc == code and message in err and "Traceback" not in err and out == ""


def _parsers():
    from crab_core import cli_eval, cli_infer

    return {"infer": cli_infer.build_parser(), "eval": cli_eval.build_parser()}


@pytest.mark.parametrize("name", ["infer", "eval"])
def test_every_option_has_help_and_one_program_name(name):
    parser = _parsers()[name]
    missing = [a.option_strings for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert not missing
    text = parser.format_help()
    assert text.startswith(f"usage: python -m crab_core {name} ") and "examples:" in text
    assert text.count("python -m crab_core") >= 3


def test_top_level_help_version_and_unknown_command(capsys):
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0 and out.startswith("usage: python -m crab_core COMMAND")
    assert "Run 'python -m crab_core COMMAND --help'" in out and "examples:" in out
    assert all(name in out for name in cli.COMMANDS)
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert _run(capsys, "--version")[:2] == (0, f"python -m crab_core (crab-studio) {version}\n")
    rc, _, err = _run(capsys, "dance")
    assert rc == 2 and "unknown command 'dance'" in err and len(err.strip().splitlines()) == 1


def test_crab_files_are_given_as_in_the_app():
    args = _parsers()["infer"].parse_args(["--task", "ave", "--crab", "a.bin", "--crab", "b.bin"])
    assert args.crab == ["a.bin", "b.bin"] and args.device == "auto" and args.threads is None


def test_shared_defaults_match_the_library():
    from crab_core.media.limits import DEFAULT_MAX_DURATION_S

    assert cli_common.DEFAULT_MAX_DURATION_S == DEFAULT_MAX_DURATION_S


def test_help_imports_no_torch():
    code = (
        "import sys; from crab_core import cli_infer, cli_eval; cli_infer.build_parser().format_help(); "
        "cli_eval.build_parser().format_help(); "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-1000:]


def test_threads_default_to_one_for_small_models():
    tiny, big = torch.nn.Linear(10, 10), torch.nn.Linear(8000, 8000)  # 110 parameters / 64 M
    torch.set_num_threads(2)
    assert cli_common.apply_threads(tiny, None) == 1
    torch.set_num_threads(2)
    assert cli_common.apply_threads(big, None) == 2  # left alone
    assert cli_common.apply_threads(tiny, 2) == 2  # --threads wins


@needs_tiny
def test_eval_warns_about_rows_that_are_not_synthav(capsys, real_media_dir, tmp_path):
    import shutil

    from crab_core.synthav import generate_split

    manifest, _ = generate_split(tmp_path, "test", 2, seed=5, tasks=["s4"], image_size=64, progress=False)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rc, out, err = _run(
        capsys, "eval", "--data", manifest, "--json", "--no-progress", "--max-new-tokens", "2"
    )
    assert rc == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["out_of_domain_rows"] == 0 and "warning:" not in err
    shutil.copyfile(real_media_dir / "s4" / "0.jpg", manifest.parent / "real.jpg")
    rows[0]["image"] = "real.jpg"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, out, err = _run(
        capsys, "eval", "--data", manifest, "--json", "--no-progress", "--max-new-tokens", "2"
    )
    assert rc == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["out_of_domain_rows"] == 1
    assert "warning: 1 of 2 rows are not SynthAV clips" in err


@pytest.mark.parametrize("name", ["infer", "eval", "inspect", "convert", "verify-reference"])
def test_command_help_uses_one_program_name(capsys, name):
    rc, out, err = _run(capsys, name, "--help")
    assert rc == 0 and out.startswith(f"usage: python -m crab_core {name} "), out[:200]


@needs_tiny
def test_save_mask_from_a_video_frame(capsys, tmp_path):
    video = REPO / "assets" / "examples" / "s4.mp4"  # 112 x 112 SynthAV example
    mask = tmp_path / "m.png"
    rc, out, err = _run(
        capsys, "infer", "--task", "s4", "--video", video, "--frame-index", "2", "--save-mask", mask
    )
    assert rc == 0, err[-2000:]
    with Image.open(mask) as m:
        assert m.size == (112, 112) and m.mode == "L"
    assert "warning:" not in err and "note: no target second" not in err  # in domain, second given
