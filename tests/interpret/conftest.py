"""Fixtures for the interpretability tests: one random crab-tiny with perturbed LoRA heads."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_pipe():
    """A random crab-tiny (prompt-only tokenizer) whose LoRA B heads are non-zero, 1 CPU thread."""
    from crab_core.interpret.ablation import randomize_heads
    from crab_core.model.builder import build_model
    from crab_core.pipeline import CrabPipeline
    from crab_core.presets import crab_tiny
    from crab_core.tokenizer import CrabTokenizer, task_corpus

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = crab_tiny()
    pipe = CrabPipeline(
        build_model(cfg, seed=0),
        CrabTokenizer.train_bpe(task_corpus(samples_per_task=0), cfg),
        name="tiny-test",
        trained=False,
    )
    randomize_heads(pipe.model, std=0.5, seed=0)
    yield pipe
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ave_raw(tiny_pipe):
    from crab_core.interpret.inputs import synthetic_input

    return synthetic_input(tiny_pipe, "ave", seed=1)
