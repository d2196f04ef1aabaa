"""Crab Studio core library.

The public API is :data:`__all__`: the inference entry point (:class:`CrabPipeline`), model configs
and presets, the load / build functions, the tokenizer, the task registry, the errors, and what the
app shows about a model (reports, parameter counts, SynthAV class names). Subpackages with their own
``__all__`` are public too: :mod:`crab_core.tasks`, :mod:`crab_core.media`, :mod:`crab_core.metrics`
and the :mod:`crab_core.interpret` modules. Everything else (``model``, ``checkpoint``, ``training``,
``synthav`` internals) may change without notice.

Names load lazily (PEP 562), so ``import crab_core`` stays light: no torch until a name that needs
it is used. The layers these names come from are enforced by import-linter (``.importlinter``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute in that module)
_EXPORTS: dict[str, tuple[str, str]] = {
    # inference
    "CrabPipeline": ("crab_core.pipeline", "CrabPipeline"),
    "TINY_DIR": ("crab_core.pipeline", "TINY_DIR"),
    "TaskResult": ("crab_core.pipeline_types", "TaskResult"),
    "CrabSample": ("crab_core.model.crab", "CrabSample"),
    "KIND_NAMES": ("crab_core.model.splice", "KIND_NAMES"),
    # configs and presets
    "CrabConfig": ("crab_core.config", "CrabConfig"),
    "PRESETS": ("crab_core.presets", "PRESETS"),
    "get_preset": ("crab_core.presets", "get_preset"),
    "crab_7b": ("crab_core.presets", "crab_7b"),
    "crab_tiny": ("crab_core.presets", "crab_tiny"),
    # building and loading models
    "build_model": ("crab_core.model.builder", "build_model"),
    "count_parameters": ("crab_core.model.builder", "count_parameters"),
    "load_pretrained": ("crab_core.checkpoint.pretrained", "load_pretrained"),
    "save_pretrained": ("crab_core.checkpoint.pretrained", "save_pretrained"),
    "read_card": ("crab_core.checkpoint.pretrained", "read_card"),
    "OfficialSources": ("crab_core.checkpoint.hub", "OfficialSources"),
    "DEFAULT_LLM": ("crab_core.checkpoint.hub", "DEFAULT_LLM"),
    "DEFAULT_CLIP": ("crab_core.checkpoint.hub", "DEFAULT_CLIP"),
    "load_crab_7b": ("crab_core.checkpoint.hub", "load_crab_7b"),
    "resolve_source": ("crab_core.checkpoint.hub", "resolve"),
    "CrabTokenizer": ("crab_core.tokenizer", "CrabTokenizer"),
    "task_corpus": ("crab_core.tokenizer", "task_corpus"),
    # tasks
    "TASKS": ("crab_core.tasks", "TASKS"),
    "TaskSpec": ("crab_core.tasks", "TaskSpec"),
    "get_task": ("crab_core.tasks", "get_task"),
    # what the app shows about a model
    "SYNTHAV_CLASSES": ("crab_core.synthav.world", "CLASSES"),
    "RESULTS_GLOB": ("crab_core.reports", "RESULTS_GLOB"),
    "find_results": ("crab_core.reports", "find_results"),
    "load_results": ("crab_core.reports", "load_results"),
    "quality_report": ("crab_core.reports", "quality_report"),
    "weights_digest": ("crab_core.reports", "weights_digest"),
    # errors
    "CrabError": ("crab_core.errors", "CrabError"),
    "ConfigError": ("crab_core.errors", "ConfigError"),
    "CheckpointError": ("crab_core.errors", "CheckpointError"),
    "MediaError": ("crab_core.errors", "MediaError"),
    "TaskError": ("crab_core.errors", "TaskError"),
    "ReportError": ("crab_core.errors", "ReportError"),
    "InternalError": ("crab_core.errors", "InternalError"),
}

#: the public names (``tests/test_layers.py`` checks that every one loads and matches ``_EXPORTS``)
__all__ = [
    "__version__",
    "CheckpointError",
    "ConfigError",
    "CrabConfig",
    "CrabError",
    "CrabPipeline",
    "CrabSample",
    "CrabTokenizer",
    "DEFAULT_CLIP",
    "DEFAULT_LLM",
    "InternalError",
    "KIND_NAMES",
    "MediaError",
    "OfficialSources",
    "PRESETS",
    "RESULTS_GLOB",
    "ReportError",
    "SYNTHAV_CLASSES",
    "TASKS",
    "TINY_DIR",
    "TaskError",
    "TaskResult",
    "TaskSpec",
    "build_model",
    "count_parameters",
    "crab_7b",
    "crab_tiny",
    "find_results",
    "get_preset",
    "get_task",
    "load_crab_7b",
    "load_pretrained",
    "load_results",
    "quality_report",
    "read_card",
    "resolve_source",
    "save_pretrained",
    "task_corpus",
    "weights_digest",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and cache it in the package namespace."""
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'crab_core' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static tools see; at run time the names load through ``__getattr__``
    from .checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources, load_crab_7b
    from .checkpoint.hub import resolve as resolve_source
    from .checkpoint.pretrained import load_pretrained, read_card, save_pretrained
    from .config import CrabConfig
    from .errors import (
        CheckpointError,
        ConfigError,
        CrabError,
        InternalError,
        MediaError,
        ReportError,
        TaskError,
    )
    from .model.builder import build_model, count_parameters
    from .model.crab import CrabSample
    from .model.splice import KIND_NAMES
    from .pipeline import TINY_DIR, CrabPipeline
    from .pipeline_types import TaskResult
    from .presets import PRESETS, crab_7b, crab_tiny, get_preset
    from .reports import RESULTS_GLOB, find_results, load_results, quality_report, weights_digest
    from .synthav.world import CLASSES as SYNTHAV_CLASSES
    from .tasks import TASKS, TaskSpec, get_task
    from .tokenizer import CrabTokenizer, task_corpus
