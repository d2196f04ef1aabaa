"""``python -m crab_core space build``: the folder's contents, pins, LFS rules, crab-7b sources, and
``--push`` against a fake HfApi (no network; the token is never written)."""

from __future__ import annotations

import fnmatch
import json
import re
from importlib import metadata

import pytest

from crab_core.cli import main as cli_main
from crab_core.errors import ConfigError, CrabError
from crab_core.space.build import LFS_PATTERNS, SpaceSources, build_space, pinned_requirements
from crab_core.space.push import push_space
from tests._helpers import REPO


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_space(tmp_path_factory.mktemp("space") / "tiny", "crab-tiny")


def _front_matter(text: str) -> dict[str, str]:
    head = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)


def test_folder_is_self_contained(tiny):
    out = tiny.out
    for rel in ("app.py", "space.json", "requirements.txt", "packages.txt", ".gitattributes", "README.md"):
        assert (out / rel).is_file(), rel
    for rel in ("crab_core/pipeline.py", "app/engine.py", "app/gpu.py", "assets/crab-tiny/model.safetensors"):
        assert (out / rel).is_file(), rel
    assert (out / "assets" / "examples" / "examples.json").is_file() and (
        out / "assets" / "styles.css"
    ).is_file()
    assert (out / "app.py").read_text() == (REPO / "spaces" / "app.py").read_text()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.pyc"))
    assert json.loads((out / "space.json").read_text()) == {"model": "crab-tiny"}
    assert (out / "packages.txt").read_text().split() == ["ffmpeg"]


def test_requirements_pinned_to_the_tested_versions(tiny):
    lines = (tiny.out / "requirements.txt").read_text().split()
    repo = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in repo if ln] == lines[: len([ln for ln in repo if ln])]
    for line in lines:
        name, version = line.split("==")
        assert metadata.version(name) == version or metadata.version(name).startswith(version + "+"), line
    assert any(line.startswith("huggingface_hub==") for line in lines)
    fm = _front_matter((tiny.out / "README.md").read_text())
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == metadata.version("gradio")
    assert fm["app_file"] == "app.py"
    colors = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")  # the config reference's
    assert fm["colorFrom"] in colors and fm["colorTo"] in colors


def test_every_binary_file_is_under_lfs(tiny):
    rules = (tiny.out / ".gitattributes").read_text().splitlines()
    assert all(r.endswith("filter=lfs diff=lfs merge=lfs -text") for r in rules)
    patterns = [r.split()[0] for r in rules]
    assert set(patterns) == set(LFS_PATTERNS)
    binaries = []
    for p in tiny.out.rglob("*"):
        if p.is_file():
            try:
                p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                binaries.append(p)
    assert binaries and all(any(fnmatch.fnmatch(p.name, pat) for pat in patterns) for p in binaries)
    assert "assets/crab-tiny/model.safetensors" in tiny.lfs


def test_rebuild_keeps_git_and_refuses_foreign_folders(tmp_path):
    out = tmp_path / "space"
    build_space(out)
    (out / ".git").mkdir()
    (out / "stale.txt").write_text("old")
    build_space(out)
    assert (out / ".git").is_dir() and not (out / "stale.txt").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        build_space(foreign)
    assert (foreign / "notes.txt").read_text() == "keep"


def test_crab_7b_sources(tmp_path):
    beats = tmp_path / "BEATs_iter3_plus.pt"
    beats.write_bytes(b"\0" * 16)
    rep = build_space(
        tmp_path / "big",
        "crab-7b",
        SpaceSources(beats=str(beats), crab=("ahsgdxhs/Crab/finetune_weights.bin",)),
    )
    settings = json.loads((rep.out / "space.json").read_text())
    assert settings == {
        "model": "crab-7b",
        "beats": "weights/BEATs_iter3_plus.pt",
        "crab": ["ahsgdxhs/Crab/finetune_weights.bin"],
    }
    assert (rep.out / "weights" / beats.name).is_file() and "weights/BEATs_iter3_plus.pt" in rep.lfs
    assert not (rep.out / "assets" / "crab-tiny").exists()
    readme = (rep.out / "README.md").read_text()
    assert "HF_TOKEN" in readme and "suggested_hardware: a10g-small" in readme
    default = build_space(tmp_path / "default", "crab-7b")
    text = (default.out / "README.md").read_text()
    assert re.search(
        r"preload_from_hub:\n  - ahsgdxhs/Crab finetune_weights.bin,avs_finetune_weights.bin,avss", text
    )
    url = build_space(tmp_path / "url", "crab-7b", SpaceSources(beats="https://example.org/BEATs.pt"))
    assert json.loads((url.out / "space.json").read_text())["beats"] == "https://example.org/BEATs.pt"
    with pytest.raises(ConfigError, match="local folder"):
        build_space(tmp_path / "dir", "crab-7b", SpaceSources(llm=str(tmp_path)))


def test_unpinned_requirement_is_refused(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("torch>=2.4\n")
    with pytest.raises(ConfigError, match="not pinned"):
        pinned_requirements(req)


class FakeApi:
    """Records HfApi calls."""

    def __init__(self, token=None, fail=None):
        self.token, self.fail, self.calls = token, fail, []

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))
        if self.fail:
            raise self.fail

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))


def test_push_uploads_the_folder_as_a_gradio_space(tiny):
    api = FakeApi()
    url = push_space(tiny.out, "someone/crab-studio", api=api)
    assert url == "https://huggingface.co/spaces/someone/crab-studio"
    (c_name, create), (u_name, upload) = api.calls
    assert c_name == "create_repo" and create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert create["exist_ok"] is True
    assert (
        u_name == "upload_folder"
        and upload["folder_path"] == str(tiny.out)
        and upload["repo_type"] == "space"
    )


def test_push_errors_are_one_line(tiny, tmp_path):
    with pytest.raises(ConfigError, match="Space id"):
        push_space(tiny.out, "no-owner", api=FakeApi())
    with pytest.raises(ConfigError, match="not a built Space folder"):
        push_space(tmp_path, "a/b", api=FakeApi())
    with pytest.raises(
        CrabError, match="cannot push to the Space a/b: PermissionError: 403\\s*$|HF_TOKEN"
    ) as exc:
        push_space(tiny.out, "a/b", api=FakeApi(fail=PermissionError("403\nForbidden")))
    assert "\n" not in str(exc.value)


def test_cli_build_and_push_token_from_env_never_written(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    made = []

    def fake_hfapi(token=None):
        made.append(FakeApi(token))
        return made[-1]

    secret = "hf_secret_for_the_test_0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(huggingface_hub, "HfApi", fake_hfapi)
    out = tmp_path / "pushed"
    assert cli_main(["space", "build", "--out", str(out), "--push", "me/studio"]) == 0
    assert made[0].token == secret and [c for c, _ in made[0].calls] == ["create_repo", "upload_folder"]
    assert "pushed: https://huggingface.co/spaces/me/studio" in capsys.readouterr().out
    big = tmp_path / "pushed7b"
    assert cli_main(["space", "build", "--out", str(big), "--model", "crab-7b", "--push", "me/studio7b"]) == 0
    assert "secret HF_TOKEN" in capsys.readouterr().out
    for folder in (out, big):
        for p in folder.rglob("*"):
            if p.is_file():
                assert secret.encode() not in p.read_bytes(), p


def test_cli_usage_errors(tmp_path, capsys):
    assert cli_main(["space", "build", "--out", str(tmp_path / "x"), "--beats", "b.pt"]) == 2
    assert "crab-7b options" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["space", "build", "--out", str(tmp_path / "y"), "--model", "crab-13b"])
    assert "invalid choice" in capsys.readouterr().err
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "f").write_text("x")
    assert cli_main(["space", "build", "--out", str(tmp_path / "z")]) == 1  # one-line error, no traceback
    assert capsys.readouterr().err.startswith("error: ")


def test_help_names_the_program_and_imports_no_torch():
    import subprocess
    import sys

    from crab_core.space.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["build"]
    assert all((a.help or "").strip() for a in sub._actions if a.option_strings)
    assert sub.format_help().startswith("usage: python -m crab_core space build ")
    code = (
        "import sys; from crab_core.space import cli; cli.build_parser().format_help()\n"
        "print(sorted({'torch', 'gradio', 'transformers'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("[]"), proc.stderr[-1000:]
