"""``Phase.avss_balance`` (a training option, moved out of ``SegConfig``) reaches the mask loss."""

from crab_core.training.recipe import SEG_TASKS, DataSpec, Phase, Recipe, micro_config
from crab_core.training.trainer import Trainer


def test_trainer_sets_the_phase_avss_balance_on_the_seg_module(tmp_path):
    seg = {t: 1.0 for t in SEG_TASKS}
    phases = (
        Phase("plain", 1, ("seg_module",), seg, batch_size=2, mask_loss=True),
        Phase("balanced", 1, ("seg_module",), seg, batch_size=2, mask_loss=True, avss_balance=0.7),
    )
    recipe = Recipe(
        "avss-balance",
        micro_config(),
        DataSpec(synth_per_task=1, val_per_task=0, workers=1),
        phases,
        checkpoint_every=100,
        log_every=1,
        tokenizer_samples=2,
    )
    t = Trainer(recipe, tmp_path, progress=False, cache_dir=tmp_path / "cache")
    t.setup()
    assert t.model.seg_module.avss_balance == 0.0  # the model config carries no training option
    seen = []
    original = t._run_phase

    def spy(pi, state):
        done = original(pi, state)
        seen.append(t.model.seg_module.avss_balance)
        return done

    t._run_phase = spy
    assert t.train()
    assert seen == [0.0, 0.7]
