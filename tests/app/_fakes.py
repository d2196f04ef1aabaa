"""Small fake run records and routing traces for model-free app tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crab_core.interpret.capture import RoutingTrace
from crab_core.tasks import parse


@dataclass
class FakeResult:
    task: str
    text: str
    parsed: object = None
    mask: np.ndarray | None = None
    timings: dict = field(default_factory=lambda: {"encode": 0.1, "generate": 0.2})
    cached: bool = False

    def __post_init__(self):
        self.parsed = parse(self.task, self.text)


@dataclass
class FakeRequest:
    task: str


@dataclass
class FakeRecord:
    result: FakeResult
    trace: RoutingTrace | None = None
    target: np.ndarray | None = None
    gt: np.ndarray | None = None
    control: object = None
    seconds: float = 0.5
    extras: dict = field(default_factory=dict)

    @property
    def request(self):
        return FakeRequest(self.result.task)


def fake_trace(
    n_frames: int = 3,
    n_seconds: int = 3,
    q: int = 2,
    n_answer: int = 4,
    layers: int = 2,
    heads: int = 3,
    seed: int = 0,
) -> RoutingTrace:
    rng = np.random.default_rng(seed)
    kinds = (
        ["text"] * 3
        + ["video"] * (n_frames * q)
        + ["audio"] * (n_seconds * q)
        + ["text"] * 2
        + ["answer"] * n_answer
    )
    units = (
        [-1] * 3
        + [i // q for i in range(n_frames * q)]
        + [i // q for i in range(n_seconds * q)]
        + [-1] * (2 + n_answer)
    )
    n, projs = len(kinds), ["q_proj", "v_proj"]
    logits = rng.normal(size=(n, layers, len(projs), heads))
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return RoutingTrace(
        list(range(layers)),
        projs,
        w.astype(np.float32),
        rng.random((n, layers, len(projs), heads)).astype(np.float32),
        np.array(kinds),
        np.array(units),
        np.arange(n),
        np.arange(n),
        [f"t{i}" for i in range(n)],
    )
