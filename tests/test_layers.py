"""Architecture rules: crab_core never imports gradio; importing crab_core downloads nothing."""

from __future__ import annotations

import ast
import subprocess
import sys

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
