"""Typed training recipes: data, phases (what trains on which tasks, how long, at which LR).

The phases mirror Crab's stages (crab-reference.md section 3) with the corrected behaviour
(``CompatConfig(mode="corrected")``, mask loss on in the seg stage):

=============  ==========================================  ===================================
phase          Crab stage it mirrors                        trains
=============  ==========================================  ===================================
``audio``      (none: Crab starts from pretrained BEATs)     BEATs alone with its supervised head
``towers``     (none: Crab starts from pretrained CLIP /     CLIP + BEATs with supervised heads
               BEATs; crab-tiny has no pretrained towers)   (:mod:`crab_core.training.towers`),
                                                            and the projectors under linear probes
                                                            (:mod:`crab_core.training.probes`)
``align``      visual / audio projector pretraining; for    projectors + the LLM base (which has
               crab-tiny also the LLM's own pretraining     no pretrained weights) on every task,
                                                            probes kept on as an auxiliary loss
``instruct``   joint I-LoRA finetune on AV-UIE, seg tasks   I-LoRA + projectors (LLM base frozen)
               as text (``seg_branch False``)
``seg``        AVS finetune (mask loss really on, #2)       seg module (mask loss + LM loss)
=============  ==========================================  ===================================

A text-only phase (``Phase(text_only=True)``: LM loss on answer texts without media) is available
for language pretraining of a scratch LLM; the shipped recipe does not use it (it strengthened
the text prior and the model learned to ignore the media).

Schedule: linear warmup then linear decay to 0 (the DS ``WarmupDecayLR`` Crab really used), AdamW
with ``weight_decay=0``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..config import CrabConfig
from ..errors import ConfigError
from ..presets import crab_micro, crab_tiny
from ..tasks import TASKS, seg_tasks
from .module import COMPONENTS

ALL_TASKS = tuple(TASKS)
SEG_TASKS = seg_tasks()
#: crab-tiny v5 step counts of its last three phases (the 90-minute budget of issue #13)
ALIGN_STEPS = 1600
INSTRUCT_STEPS = 2400
SEG_STEPS = 3000


@dataclass(frozen=True)
class Phase:
    """One training phase.

    Attributes:
        name: phase name (logs, checkpoints).
        steps: optimizer steps.
        trainable: components trained (:data:`crab_core.training.module.COMPONENTS`); the rest is frozen.
        tasks: task -> sampling weight of the mixed-task batches.
        lr: peak learning rate.
        lr_scale: per-component LR multipliers (one parameter group per component).
        batch_size: micro-batch per process; the effective batch is
            ``batch_size * grad_accum * num_processes``.
        grad_accum: gradient accumulation steps.
        warmup_ratio: share of ``steps`` with linear warmup.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (0 = off).
        objective: ``lm`` (LM loss, plus mask loss when ``mask_loss``) or ``towers``.
        mask_loss: run the mask decoder on seg samples and add its loss.
        avss_balance: share of the class-balanced AVSS cross-entropy in the mask loss
            (:mod:`crab_core.model.seg.losses`; 0 = the reference's pixel mean). A training option, so
            it lives here and not in the model config (``SegConfig`` of old ``config.json`` files may
            still carry it: it is ignored on load).
        text_only: LM loss on the answer texts alone (no prompt, no media): language pretraining
            of an LLM that starts from scratch.
        probe_weight: weight of the linear media-token probes' loss (:mod:`crab_core.training.probes`)
            added to the LM loss; 0 = off. (The ``towers`` objective adds the probes whenever the
            projectors are trainable.)
        seg_probe_weight: weight of the seg-token probe's loss
            (:class:`~crab_core.training.probes.SegTokenProbe`: the LLM states of the seg tokens must
            tell which classes the target mask holds); 0 = off.
        lm_weighting: how the LM loss averages: ``token`` (over every answer token of the batch, as the
            reference; long answers weigh more) or ``answer`` (each answer's mean token loss, then the
            mean over answers: a short AVQA answer weighs as much as a long AVVP one).
        seg_swap_weight: weight of the counterfactual-prompt mask loss (:mod:`crab_core.training.swap`:
            the seg tokens of one S4 / MS3 item decoded on another item's frame must segment the classes
            they name there); 0 = off. Needs ``mask_loss``.
        flag_weight: weight of the ``checked`` AVQA flags' own loss (:mod:`crab_core.training.flags`:
            the mean cross-entropy of the flag tokens) added to the LM loss; 0 = off.
    """

    name: str
    steps: int
    trainable: tuple[str, ...]
    tasks: Mapping[str, float]
    lr: float = 1e-4
    lr_scale: Mapping[str, float] = field(default_factory=dict)
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    objective: Literal["lm", "towers"] = "lm"
    mask_loss: bool = False
    avss_balance: float = 0.0
    text_only: bool = False
    probe_weight: float = 0.0
    seg_probe_weight: float = 0.0
    seg_swap_weight: float = 0.0
    lm_weighting: Literal["token", "answer"] = "token"
    flag_weight: float = 0.0

    def __post_init__(self) -> None:
        bad = [c for c in self.trainable if c not in COMPONENTS]
        if bad:
            raise ConfigError(f"phase {self.name!r}: unknown components {bad}; known: {COMPONENTS}")
        if self.steps < 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"phase {self.name!r}: steps >= 0, batch_size >= 1, grad_accum >= 1")
        if not self.tasks or any(w < 0 for w in self.tasks.values()) or sum(self.tasks.values()) <= 0:
            raise ConfigError(f"phase {self.name!r}: task weights must be >= 0 with a positive sum")
        if min(self.probe_weight, self.seg_probe_weight, self.seg_swap_weight, self.flag_weight) < 0:
            raise ConfigError(f"phase {self.name!r}: probe weights must be >= 0")
        if not 0.0 <= self.avss_balance <= 1.0:
            raise ConfigError(f"phase {self.name!r}: avss_balance must be in [0, 1]")
        if self.lm_weighting not in ("token", "answer"):
            raise ConfigError(f"phase {self.name!r}: lm_weighting must be 'token' or 'answer'")
        if self.objective not in ("lm", "towers"):
            raise ConfigError(f"phase {self.name!r}: objective must be 'lm' or 'towers'")

    @property
    def frozen_towers(self) -> bool:
        """Whether CLIP and BEATs stay frozen (their outputs can then be cached)."""
        return not ({"visual_encoder", "audio_encoder"} & set(self.trainable)) and not self.text_only


@dataclass(frozen=True)
class DataSpec:
    """Training / validation data.

    Attributes:
        synth_per_task: SynthAV training samples per task (split ``train``, rendered in memory).
        val_per_task: SynthAV ``val`` samples per task for periodic evaluation.
        user_seed: SynthAV user seed.
        manifests: Crab-format JSONL manifests (docs/manifest.md) added to the training set.
        workers: rendering processes.
        avqa_questions: more questions per SynthAV AVQA training clip (:mod:`crab_core.training.variants`;
            same media, no rendering).
        avqa_variant_types: which types those questions take: ``other`` (distinct types other than
            the clip's own) or ``any`` (drawn with replacement among all types, the clip's own
            included: the same clip is asked about other entities of one type, with other answers).
        avqa_checked_questions: more questions per SynthAV AVQA training clip, on top of
            ``avqa_questions``, of the Audio / Visual existential types alone (``checked`` in
            :mod:`crab_core.training.variants`): with ``avqa_layout="checked"`` each carries flags.
        avvp_layout: how SynthAV AVVP targets write their audio events: ``ranges`` (the reference's
            runs per event) or ``seconds`` (one tag per audible second, in time order;
            :mod:`crab_core.training.layouts`).
        avqa_layout: how SynthAV Audio / Visual existential AVQA targets write their list of classes:
            ``reference`` or ``checked`` (each listed class flagged ``(yes)`` / ``(no)``: is it the
            asked one; :mod:`crab_core.training.layouts`).
        extra_per_task: more SynthAV ``train`` samples for some tasks, on top of ``synth_per_task``
            (the next seeds of the task's sequence: the first ``synth_per_task`` are unchanged).
    """

    synth_per_task: int = 400
    val_per_task: int = 10
    user_seed: int = 0
    manifests: tuple[str, ...] = ()
    workers: int = 2
    avqa_questions: int = 0
    avqa_variant_types: str = "other"
    avqa_checked_questions: int = 0
    avvp_layout: str = "ranges"
    avqa_layout: str = "reference"
    extra_per_task: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A full training run: model geometry, data, phases."""

    name: str
    model: CrabConfig
    data: DataSpec
    phases: tuple[Phase, ...]
    seed: int = 42
    eval_every: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    tokenizer_samples: int = 40

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"recipe {self.name!r}: phase names must be unique, got {names}")
        if self.model.compat.mode != "corrected":
            raise ConfigError("our recipes train the corrected model (CompatConfig(mode='corrected'))")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in ALL_TASKS if any(p.tasks.get(t, 0) > 0 for p in self.phases))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> Recipe:
        return dataclasses.replace(self, **kw)


def _tiny_phases(
    scale: float = 1.0,
    align: int = ALIGN_STEPS,
    instruct: int = INSTRUCT_STEPS,
    seg: int = SEG_STEPS,
    ms3_seg: float = 1.0,
    avvp_instruct: float = 1.0,
) -> tuple[Phase, ...]:
    """The crab-tiny phases (v5 by default); ``align`` / ``instruct`` / ``seg``: steps of those
    phases, ``ms3_seg``: MS3's sampling weight in ``seg``, ``avvp_instruct``: AVVP's in ``instruct``;
    ``scale`` multiplies every step count."""

    def n(steps: int) -> int:
        return max(1, int(round(steps * scale)))

    every = {t: 1.0 for t in ALL_TASKS}
    llm = ("llm_base", "embed_tokens", "lm_head")
    proj = ("vl_projector", "al_projector")
    # tasks whose clips come as one 1-s audio window per second (the audio tower's labels)
    uniform_audio = {t: 1.0 for t in ("ave", "avvp", "caption", "arig", "s4", "ms3", "ref-avs")}
    return (
        # BEATs-tiny alone first: it learns far slower than the vision tower (per-second audible F1
        # 0.97 after 2000 steps of 8 clips at 2e-3, 0.21 after 300 steps at 5e-3;
        # benchmarks/tiny_training_choices.py)
        Phase(
            "audio",
            n(2000),
            ("audio_encoder", "tower_heads"),
            uniform_audio,
            lr=2e-3,
            batch_size=8,
            objective="towers",
        ),
        Phase(
            "towers",
            n(1000),
            ("visual_encoder", "audio_encoder", *proj, "tower_heads"),
            every,
            lr=2e-3,
            batch_size=8,
            objective="towers",
        ),
        Phase(
            "align",
            n(align),
            (*proj, *llm, "tower_heads"),
            {**every, "caption": 0.5},
            lr=2e-3,
            batch_size=16,
            probe_weight=0.5,
        ),
        # AVQA and ARIG (the furthest from their targets) get twice the share of the other tasks
        Phase(
            "instruct",
            n(instruct),
            ("lora", *proj, "tower_heads"),
            {**every, "caption": 0.3, "avqa": 2.0, "arig": 2.0, "avvp": avvp_instruct},
            lr=2e-3,
            lr_scale={"vl_projector": 0.5, "al_projector": 0.5},
            batch_size=16,
            probe_weight=0.5,
        ),
        # v5: the prompt decoder (SegConfig.decoder="prompt") and I-LoRA train together, so the mask loss
        # shapes what the LLM writes into the seg tokens (v4 trained the seg module alone: its decoder
        # ignored the prompt, swap IoU 1.00, issue #13). The other tasks stay in the mix with their LM
        # loss, at a quarter of I-LoRA's instruct LR, so I-LoRA keeps them. AVSS (71-way cross-entropy,
        # mostly background) gets twice the share of each binary task.
        # The seg-token probe makes the seg-token states carry the target's classes (class share of their
        # variance 0.40 -> 0.74) and the counterfactual-prompt loss (crab_core.training.swap) makes the
        # decoder read them: with the first two alone the decoder still ignored its prompt after 600 steps
        # (swap IoU 0.99 / 0.93; runs of benchmarks/seg_selection.py, see docs/deviations.md).
        Phase(
            "seg",
            n(seg),
            ("seg_module", "lora", "tower_heads"),
            {
                **{t: 0.5 for t in ALL_TASKS if t not in SEG_TASKS},
                "caption": 0.1,
                **{t: 1.0 for t in SEG_TASKS},
                "avss": 2.0,
                "ms3": ms3_seg,
            },
            lr=2e-3,
            lr_scale={"lora": 0.25},
            batch_size=8,
            mask_loss=True,
            avss_balance=0.5,
            seg_probe_weight=1.0,
            seg_swap_weight=1.0,
        ),
    )


def crab_tiny_recipe() -> Recipe:
    """The recipe of the shipped ``crab-tiny`` (2 CPU cores, at most 90 minutes)."""
    return Recipe(
        name="crab-tiny",
        model=crab_tiny(),
        data=DataSpec(synth_per_task=1000, workers=2),
        phases=_tiny_phases(),
        eval_every=0,
        checkpoint_every=50,
    )


def micro_config() -> CrabConfig:
    """A very small geometry of the same classes (tests, smoke runs): :func:`crab_core.presets.crab_micro`."""
    return crab_micro()


def smoke_recipe() -> Recipe:
    """A seconds-long run of every phase on a micro model (CI)."""
    every = {t: 1.0 for t in ALL_TASKS}
    phases = (
        Phase(
            "towers",
            2,
            ("visual_encoder", "audio_encoder", "tower_heads"),
            every,
            lr=1e-3,
            batch_size=2,
            objective="towers",
        ),
        Phase(
            "align",
            2,
            ("vl_projector", "al_projector", "llm_base", "embed_tokens", "lm_head"),
            {"caption": 1.0},
            lr=1e-3,
            batch_size=2,
        ),
        Phase(
            "instruct",
            3,
            ("lora", "vl_projector", "al_projector"),
            every,
            lr=1e-3,
            batch_size=2,
            grad_accum=2,
        ),
        Phase(
            "seg",
            2,
            ("seg_module", "lora", "tower_heads"),
            {t: 1.0 for t in SEG_TASKS},
            lr=1e-3,
            batch_size=4,
            mask_loss=True,
            seg_probe_weight=1.0,
            seg_swap_weight=1.0,
        ),
    )
    return Recipe(
        name="smoke",
        model=micro_config(),
        data=DataSpec(synth_per_task=2, val_per_task=1, workers=1),
        phases=phases,
        checkpoint_every=2,
        log_every=1,
        tokenizer_samples=4,
    )


RECIPES: dict[str, Callable[[], Recipe]] = {
    "crab-tiny": crab_tiny_recipe,
    "smoke": smoke_recipe,
}


def recipes() -> dict[str, Callable[[], Recipe]]:
    """Every named recipe: :data:`RECIPES` and the crab-tiny candidates of
    :mod:`crab_core.training.candidates` (trained and measured, not shipped)."""
    from .candidates import CANDIDATES

    return {**RECIPES, **CANDIDATES}


def get_recipe(name: str) -> Recipe:
    """Recipe by name; raises ``ConfigError`` for an unknown one."""
    known = recipes()
    try:
        return known[name]()
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(known)}") from None
