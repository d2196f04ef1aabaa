"""Write a self-contained Hugging Face Space folder for Crab Studio.

The folder holds everything the Space runs: ``app.py`` (the ZeroGPU-ready entry, ``spaces/app.py``),
``crab_core/``, ``app/``, ``assets/`` (crab-tiny's weights when it is served, the examples, the
styles), ``space.json`` (what to serve), ``README.md`` with the Space front matter,
``requirements.txt`` pinned to the versions the test suite runs (the repository's
``requirements.txt``, plus huggingface_hub as installed), ``packages.txt`` (ffmpeg) and
``.gitattributes`` with LFS rules for weights and media. Local crab-7b files (BEATs, Crab files) are
copied into ``weights/``; Hub files and URLs are fetched by the Space at start-up.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MODELS = ("crab-tiny", "crab-7b")
#: Binary files tracked by Git LFS on the Hub (weights and media).
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.npy", "*.npz",
    "*.mp4", "*.webm", "*.mov", "*.mkv", "*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a",
    "*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp",
)  # fmt: skip
SYSTEM_PACKAGES = ("ffmpeg",)
#: Pinned besides requirements.txt: imported by crab_core.checkpoint.hub (transformers pulls it in).
EXTRA_PINS = ("huggingface_hub",)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-!]+)$")
URL_SCHEMES = ("http://", "https://", "file://")


@dataclass
class SpaceSources:
    """crab-7b sources written into ``space.json`` (None: the Space's defaults, the Hub ids of
    :mod:`crab_core.checkpoint.hub` and the released files in ``ahsgdxhs/Crab``)."""

    llm: str | None = None
    clip: str | None = None
    beats: str | None = None
    crab: tuple[str, ...] = ()


@dataclass
class SpaceBuild:
    """What :func:`build_space` wrote."""

    out: Path
    model: str
    files: list[str] = field(default_factory=list)
    lfs: list[str] = field(default_factory=list)
    size_bytes: int = 0

    def summary(self) -> str:
        return (
            f"Space folder {self.out}: {self.model}, {len(self.files)} files, "
            f"{self.size_bytes / 1e6:.1f} MB ({len(self.lfs)} under LFS)"
        )


def pinned_requirements(req_file: Path = REPO / "requirements.txt") -> list[str]:
    """``name==version`` lines: the runtime requirements the tests run with, plus :data:`EXTRA_PINS`
    at their installed versions.

    Raises:
        ConfigError: a requirement that is not pinned exactly, or an extra pin that is not installed.
    """
    lines, names = [], set()
    for raw in req_file.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        if m is None:
            raise ConfigError(f"{req_file}: {line!r} is not pinned as name==version")
        lines.append(line)
        names.add(_norm(m.group(1)))
    for name in EXTRA_PINS:
        if _norm(name) not in names:
            try:
                lines.append(f"{name}=={metadata.version(name)}")
            except metadata.PackageNotFoundError:
                raise ConfigError(f"{name} is not installed: cannot pin it for the Space") from None
    return lines


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def front_matter(model: str, gradio_version: str, settings: dict) -> str:
    """The README's YAML header (Space card): SDK, versions, entry file, hardware hint for crab-7b."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        "---",
        "title: Crab Studio",
        "emoji: 🦀",
        "colorFrom: red",
        "colorTo: yellow",
        "sdk: gradio",
        f"sdk_version: {gradio_version}",
        f'python_version: "{py}"',
        "app_file: app.py",
        "pinned: false",
        "license: apache-2.0",
        "short_description: Audio-visual Crab tasks and a look inside its I-LoRA heads",
    ]
    if model == "crab-7b":
        from ..checkpoint.hub import OFFICIAL_FILES, OFFICIAL_REPO

        # a hint only (ZeroGPU is not a valid value here; it is picked in the Space settings): 24 GB
        # holds crab-7b in bf16
        lines += ["suggested_hardware: a10g-small", "models:", f"  - {OFFICIAL_REPO}"]
        lines += [f"  - {settings.get('llm') or 'meta-llama/Llama-2-7b-chat-hf'}"]
        if not settings.get("crab"):
            lines += ["preload_from_hub:", f"  - {OFFICIAL_REPO} {','.join(OFFICIAL_FILES)}"]
    return "\n".join(lines + ["---", ""])


def _readme_body(model: str) -> str:
    common = (
        "Upload a clip (video with audio, video + audio file, or image + audio), pick a Crab task (AVE, "
        "AVVP, AVQA, ARIG, S4, MS3, AVSS, Ref-AVS, captioning) and see the answer, its drawing (timeline, "
        "box, mask) and what each I-LoRA head does: router heatmaps, per-head contributions, head "
        "ablation / forcing, attention maps and captum attributions.\n\n"
        "Built by `python -m crab_core space build` from the Crab Studio repository; `space.json` says "
        "what is served, and the Space variables `CRAB_MODEL`, `CRAB_LLM`, `CRAB_CLIP`, `CRAB_BEATS`, "
        "`CRAB_WEIGHTS` (comma-separated) and `CRAB_DEVICE` override it.\n"
    )
    if model == "crab-tiny":
        return (
            "# Crab Studio (crab-tiny)\n\n" + common + "\nThis Space serves **crab-tiny**, trained only on "
            "the synthetic SynthAV world: use the bundled examples. It runs on the free CPU hardware.\n"
        )
    return (
        "# Crab Studio (crab-7b)\n\n" + common + "\nThis Space serves **crab-7b** (the released Crab "
        "weights of `ahsgdxhs/Crab`, fetched at start-up) in bf16 on a GPU; pick ZeroGPU (or a GPU of "
        "at least 24 GB) in the Space settings.\n\n"
        "- **HF_TOKEN**: LLaMA-2-7B-chat is gated. Accept its licence on the Hub with your account, "
        "create a read token and add it to the Space as the secret `HF_TOKEN`.\n"
        "- **BEATs**: the BEATs iter3+ audio encoder is released outside the Hub (microsoft/unilm); "
        "set `CRAB_BEATS` to its URL, or build with `--beats FILE` to bundle the file.\n"
        "- The AVS and AVSS files are both loaded and switched per task (S4 / MS3 / Ref-AVS use "
        "`avs_finetune_weights.bin`, AVSS uses `avss_finetune_weights.bin`).\n"
    )


def gitattributes() -> str:
    return "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)


def _bundle(source: str | None, out: Path, what: str) -> str | None:
    """A source as written into space.json: a local file is copied to ``weights/`` (its relative path
    returned); Hub ids and URLs are kept as they are."""
    if source is None or source.startswith(URL_SCHEMES):
        return source
    p = Path(source).expanduser()
    if p.is_dir():
        raise ConfigError(f"{what} {source}: a local folder cannot go into a Space; give a Hub id")
    if not p.is_file():
        if source.startswith(("/", ".", "~")) or source.count("/") < 1:
            raise ConfigError(f"{what} {source}: no such file (give a local file, a Hub id or a URL)")
        return source
    (out / "weights").mkdir(exist_ok=True)
    shutil.copy2(p, out / "weights" / p.name)
    return f"weights/{p.name}"


def _prepare_out(out: Path) -> None:
    """Create ``out``, or empty a folder of an earlier build (its ``.git`` is kept); refuse others."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.is_dir():
        entries = [p for p in out.iterdir() if p.name != ".git"]
        if entries and not (out / "space.json").is_file():
            raise ConfigError(f"{out}: not empty and not a Space folder built here (no space.json)")
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_space(out: str | Path, model: str = "crab-tiny", sources: SpaceSources | None = None) -> SpaceBuild:
    """Write the Space folder for ``model`` into ``out`` (see the module docstring).

    Raises:
        ConfigError: unknown model, a non-empty foreign ``out``, an unpinned requirement, a crab-tiny
            without trained weights, or a local folder given as a source.
    """
    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)} (got {model!r})")
    out = Path(out).expanduser().resolve()
    if model == "crab-tiny" and not (REPO / "assets" / "crab-tiny" / "model.safetensors").is_file():
        raise ConfigError(
            "assets/crab-tiny/model.safetensors is missing: the Space would serve random weights"
        )
    reqs = pinned_requirements()
    gradio = next((r.split("==")[1] for r in reqs if _norm(r.split("==")[0]) == "gradio"), None)
    if gradio is None:
        raise ConfigError("requirements.txt does not pin gradio (the Space's sdk_version)")
    _prepare_out(out)
    for name in ("crab_core", "app"):
        shutil.copytree(REPO / name, out / name, ignore=IGNORE)
    assets = ["examples", "styles.css"] + (["crab-tiny"] if model == "crab-tiny" else [])
    for name in assets:
        src = REPO / "assets" / name
        dst = out / "assets" / name
        shutil.copytree(src, dst, ignore=IGNORE) if src.is_dir() else shutil.copy2(src, dst)
    shutil.copy2(REPO / "spaces" / "app.py", out / "app.py")
    settings: dict = {"model": model}
    if model == "crab-7b":
        src = sources or SpaceSources()
        settings.update(
            llm=_bundle(src.llm, out, "--llm") if src.llm else None,
            clip=_bundle(src.clip, out, "--clip") if src.clip else None,
            beats=_bundle(src.beats, out, "--beats"),
            crab=[_bundle(f, out, "--crab") for f in src.crab],
        )
        settings = {k: v for k, v in settings.items() if v not in (None, [])}
    (out / "space.json").write_text(json.dumps(settings, indent=2) + "\n")
    (out / "README.md").write_text(front_matter(model, gradio, settings) + "\n" + _readme_body(model))
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n")
    (out / "packages.txt").write_text("\n".join(SYSTEM_PACKAGES) + "\n")
    (out / ".gitattributes").write_text(gitattributes())
    return _report(out, model)


def _report(out: Path, model: str) -> SpaceBuild:
    import fnmatch

    rep = SpaceBuild(out=out, model=model)
    for p in sorted(out.rglob("*")):
        if p.is_file() and ".git" not in p.relative_to(out).parts:
            rel = p.relative_to(out).as_posix()
            rep.files.append(rel)
            rep.size_bytes += p.stat().st_size
            if any(fnmatch.fnmatch(p.name, pat) for pat in LFS_PATTERNS):
                rep.lfs.append(rel)
    log.debug("%s", rep.summary())
    return rep
