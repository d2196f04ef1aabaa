"""Architecture rules: crab_core never imports gradio; importing crab_core downloads nothing; the
import-linter layers hold and catch a violation (issue #18); the public API loads lazily; every model
geometry lives in ``crab_core.presets``; ``build_llama`` is keyword-only."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import REPO


def test_crab_core_never_imports_gradio():
    offenders = []
    for path in (REPO / "crab_core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "gradio" or n.startswith("gradio.") or n.startswith("app") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_import_is_offline_and_light():
    code = "import sys, crab_core, crab_core.pipeline, crab_core.model.builder;print('gradio' in sys.modules)"
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.strip().endswith("False")


def test_no_unsafe_torch_load():
    for path in list((REPO / "crab_core").rglob("*.py")) + list((REPO / "app").rglob("*.py")):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


LINT = Path(sys.executable).with_name("lint-imports")

needs_lint = pytest.mark.skipif(
    not LINT.is_file(), reason="import-linter not installed (requirements-dev.txt)"
)


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(cwd / ".importlinter"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


@needs_lint
def test_import_contracts_hold():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@needs_lint
@pytest.mark.parametrize(
    ("module", "line", "message"),
    [
        # the inference pipeline may not import training (it did, for the random crab-tiny's tokenizer)
        (
            "crab_core/pipeline.py",
            "from .training import recipe",
            "crab_core.pipeline is not allowed to import",
        ),
        # a lower layer may not import a higher one
        ("crab_core/model/llm.py", "from ..checkpoint import io", "crab_core.model is not allowed to import"),
        # the app goes through the public API, not model internals
        ("app/render.py", "from crab_core.model import splice", "app.render -> crab_core.model.splice"),
    ],
)
def test_contracts_catch_a_violation(tmp_path, module, line, message):
    for name in ("crab_core", "app"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # injected by the test\n")
    proc = _lint(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stdout


def test_public_api_is_lazy_and_complete():
    code = (
        "import sys, crab_core\n"
        "light = 'torch' not in sys.modules\n"
        "missing = [n for n in crab_core.__all__ if getattr(crab_core, n, None) is None]\n"
        "same = sorted(set(crab_core.__all__) - {'__version__'}) == sorted(crab_core._EXPORTS)\n"
        "print(light, missing, same)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "[]", "True"]
    import crab_core

    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        crab_core.not_a_name  # noqa: B018
    from crab_core.pipeline import CrabPipeline

    assert crab_core.CrabPipeline is CrabPipeline


def test_random_tiny_pipeline_loads_no_training_code():
    code = (
        "import sys\n"
        "from crab_core import CrabPipeline\n"
        "pipe = CrabPipeline.random_tiny()\n"
        "print(len(pipe.tokenizer), sorted(m for m in sys.modules if m.startswith('crab_core.training')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    from crab_core.presets import crab_tiny

    assert proc.stdout.split() == [str(crab_tiny().full_vocab_size), "[]"]


GEOMETRY_CLASSES = {"VisionConfig", "BeatsConfig", "QFormerConfig", "LLMConfig", "ILoraConfig", "SegConfig"}


def test_model_geometries_are_defined_only_in_presets():
    """No crab_core module but ``presets`` (and ``config``, which defines the classes) builds a
    component config; recipes and the fixture reader take theirs from ``presets``."""
    builders = {}
    for path in sorted((REPO / "crab_core").rglob("*.py")):
        calls = {
            node.func.id
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in GEOMETRY_CLASSES
        }
        if calls:
            builders[path.relative_to(REPO).as_posix()] = sorted(calls)
    assert set(builders) == {"crab_core/presets.py", "crab_core/config.py"}, builders

    from crab_core import presets
    from crab_core.checkpoint.fixture import config_from_fixture
    from crab_core.errors import CheckpointError
    from crab_core.training.recipe import get_recipe, micro_config

    assert get_recipe("crab-tiny").model == presets.crab_tiny()
    assert get_recipe("smoke").model == micro_config() == presets.get_preset("crab-micro")
    with pytest.raises(CheckpointError, match="lacks 'llama'"):
        config_from_fixture({})


def test_build_llama_takes_keywords_only():
    from crab_core.model.llm import build_llama

    with pytest.raises(TypeError, match="positional"):
        build_llama(64, 32, 64, 1, 2, 2)
    llm = build_llama(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    cfg = llm.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads) == (
        64,
        32,
        64,
        1,
    )
    assert (cfg.max_position_embeddings, cfg.tie_word_embeddings) == (64, False)
