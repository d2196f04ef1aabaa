"""The Space entry under a fake ``spaces`` package that behaves like ZeroGPU where it matters on a
CPU: every model call goes through ``spaces.GPU`` with a duration computed from the call's own
arguments, and its arguments and result cross a process boundary (pickled both ways)."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
import types

import pytest
from gradio_client import Client, handle_file

from app.gpu import CALLS, GpuBudget, durations, zerogpu_wrapper
from crab_core.errors import ConfigError
from tests._helpers import REPO

ENTRY = REPO / "spaces" / "app.py"


class FakeSpaces:
    """``spaces`` on ZeroGPU, as far as a CPU can tell: records each decorated call and its
    requested seconds, and pickles arguments and results like the GPU worker's queues do."""

    def __init__(self) -> None:
        self.decorated: list[str] = []
        self.calls: list[tuple[str, int]] = []
        self.module = types.ModuleType("spaces")
        self.module.GPU = self.GPU
        self.module.config = types.SimpleNamespace(Config=types.SimpleNamespace(zero_gpu=True))

    def GPU(self, fn, duration=None):  # noqa: N802 - the package's name
        name = getattr(fn, "__name__", "?")
        self.decorated.append(name)

        def worker(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            self.calls.append((name, seconds))
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
            return pickle.loads(pickle.dumps(fn(*args, **kwargs)))

        return worker


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """Import spaces/app.py once (as the Space does), with the fake ZeroGPU and the CPU."""
    mp = pytest.MonkeyPatch()
    fake = FakeSpaces()
    mp.setitem(sys.modules, "spaces", fake.module)
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    mp.setenv("CRAB_DEVICE", "cpu")  # ZeroGPU would say cuda (test_device_on_zerogpu)
    from app.engine import Engine

    methods = {n: Engine.__dict__[n] for n in ("run", "attention", "attribution", "answer_nlls")}
    spec = importlib.util.spec_from_file_location("crab_space_entry", ENTRY)
    module = importlib.util.module_from_spec(spec)
    mp.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    yield module, fake, methods
    mp.undo()


@pytest.fixture(scope="module")
def client(space):
    from app.cli import launch
    from tests.app.conftest import free_port

    module, _, _ = space
    module.PIPELINE.model.to = lambda *a, **k: pytest.fail("the model moved after start-up")
    _, url, _ = launch(module.demo, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield Client(url, verbose=False)
    module.demo.close()


def test_every_model_call_is_a_gpu_call_and_nothing_is_patched(space):
    module, fake, methods = space
    from app.engine import Engine

    assert sorted(fake.decorated) == sorted(["run", "run", "compare_heads", "attention", "attribution"])
    assert {n: Engine.__dict__[n] for n in methods} == methods  # no monkeypatching of Engine
    assert module.PIPELINE.trained and module.zero_gpu()


def test_device_on_zerogpu(space):
    module, _, _ = space
    assert module.choose_device(module.SpaceSettings()) == "cuda"  # ZeroGPU: CUDA at import
    assert module.choose_device(module.SpaceSettings(device="cpu")) == "cpu"


def test_endpoints_through_the_gpu_wrapper(client, space):
    _, fake, _ = space
    ex = REPO / "assets" / "examples"
    views = ("all", "all", "weights", "unit", "all")
    run = client.predict(
        handle_file(str(ex / "ave.mp4")), None, None, "ave", "", 0, None, 4, *views, api_name="/run"
    )
    assert run[0].startswith("answered") and fake.calls[-1] == ("run", 15)  # 10 + 4 x 0.06 s -> minimum
    variant = client.predict("ablate", ["head 0"], ["all"], False, "all", "all", api_name="/intervene")
    assert "without head(s) 0" in variant[0] and fake.calls[-1][0] == "run"
    grid = client.predict(api_name="/compare")
    assert grid.count('class="crab-card"') == 7 and fake.calls[-1] == ("compare_heads", 72)  # 6 x 10.24 + 10
    note = client.predict("only 1", api_name="/attention")[3]
    assert "forced to head(s) 1" in note and fake.calls[-1] == ("attention", 40)
    bars = client.predict(2, "normal", api_name="/attribution")
    assert "convergence" in bars["plot"] and fake.calls[-1] == ("attribution", 16)
    # a model call that comes back through the worker keeps the app's own request (its upload lease)
    again = client.predict("ablate", ["head 1"], ["all"], False, "all", "all", api_name="/intervene")
    assert "without head(s) 1" in again[0]


def test_durations_per_task():
    d = durations(GpuBudget(), num_heads=3)
    req = types.SimpleNamespace(task="ave", max_new_tokens=None)
    assert d["run"](req) == 40  # 10 s + 500 tokens x 0.06 s
    assert d["run"](types.SimpleNamespace(task="s4", max_new_tokens=None)) == 21  # + 100 tokens, + mask
    record = types.SimpleNamespace(request=req)
    assert d["compare"](record, None, None) == 250  # 6 variants x 40 s + 10 s
    assert (
        d["compare"](types.SimpleNamespace(request=types.SimpleNamespace(task="ave", max_new_tokens=500)), 0)
        == 250
    )
    assert durations(GpuBudget(), num_heads=8)["compare"](record) == 300  # ZeroGPU's ceiling
    assert d["attribution"](record, n_steps=64) == 202 and d["attention"](record, None) == 40


def test_wrapper_refuses_unknown_calls():
    wrap = zerogpu_wrapper(lambda fn, duration: fn, num_heads=3)
    assert all(wrap(name, len) is len for name in CALLS)
    with pytest.raises(ValueError, match="unknown model call"):
        wrap("train", len)


def test_settings_file_and_space_variables(space, tmp_path):
    module, _, _ = space
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "beats.pt").write_bytes(b"x")
    (tmp_path / "space.json").write_text(json.dumps({"model": "crab-7b", "beats": "weights/beats.pt"}))
    s = module.read_settings(tmp_path, {})
    assert s.model == "crab-7b" and s.beats == str(tmp_path / "weights" / "beats.pt") and s.crab == ()
    env = {"CRAB_MODEL": "crab-tiny", "CRAB_WEIGHTS": "a/b/c.bin, d.bin", "CRAB_DEVICE": "cpu"}
    s = module.read_settings(tmp_path, env)
    assert s.model == "crab-tiny" and s.crab == ("a/b/c.bin", "d.bin") and s.device == "cpu"
    with pytest.raises(ConfigError, match="CRAB_MODEL"):
        module.read_settings(tmp_path, {"CRAB_MODEL": "crab-70b"})
    (tmp_path / "space.json").write_text(json.dumps({"modle": "crab-7b"}))
    with pytest.raises(ConfigError, match="unknown settings"):
        module.read_settings(tmp_path, {})
    assert module.server_address({"SPACE_ID": "me/x"}) == ("0.0.0.0", 7860)
    assert module.server_address({"GRADIO_SERVER_PORT": "7001"}) == ("127.0.0.1", 7001)


def test_crab_7b_on_zerogpu_loads_bf16_on_cpu_from_the_official_files(space, monkeypatch):
    """Under ZeroGPU the weights are read on the CPU in bf16 and moved to CUDA once, at import."""
    import torch

    from crab_core import pipeline_official
    from crab_core.checkpoint import hub

    module, _, _ = space
    seen = {}

    def fake_load(src, device, dtype, **kwargs):
        seen.update(src=src, device=device, dtype=dtype)
        return "pipeline"

    monkeypatch.setattr(pipeline_official, "load_crab_7b_pipeline", fake_load)
    assert module.load(module.SpaceSettings(model="crab-7b"), "cuda") == "pipeline"
    assert seen["device"] == "cpu" and seen["dtype"] == torch.bfloat16
    assert seen["src"].crab == hub.OFFICIAL_CRAB_FILES and seen["src"].llm == hub.DEFAULT_LLM
