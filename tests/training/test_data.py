"""Training data: the manifest path (files) and the SynthAV in-memory path give the same samples."""

import json

import numpy as np

from crab_core.synthav import generate_split
from crab_core.training.collate import collate
from crab_core.training.data import load_items, read_manifest, save_items, synth_raw


def test_manifest_matches_in_memory(tmp_path):
    manifest, _ = generate_split(tmp_path, "train", 2, seed=3, tasks=["ave", "s4"], image_size=32)
    rows = read_manifest(manifest, image_size=32)
    assert [r.task for r in rows] == ["ave", "s4"]
    seeds = [json.loads(line)["seed"] for line in manifest.read_text().splitlines()]
    for row, seed in zip(rows, seeds, strict=True):
        mem = synth_raw(seed, row.task, 32, with_labels=False)
        assert row.prompt == mem.prompt and row.output == mem.output
        np.testing.assert_allclose(row.audio.astype(np.float32), mem.audio.astype(np.float32), atol=1e-2)
        assert row.video.shape == mem.video.shape
        assert np.abs(row.video.astype(int) - mem.video.astype(int)).mean() < 12  # H.264 is lossy
        if mem.mask is not None:
            np.testing.assert_array_equal(row.mask, mem.mask)
            np.testing.assert_array_equal(row.image, mem.image)  # PNG is lossless


def test_cache_roundtrip_and_collate(tmp_path):
    items = [synth_raw(s, t, 32) for s, t in ((11, "avqa"), (12, "ms3"), (13, "avss"))]
    save_items(items, tmp_path / "c.pt")
    back = load_items(tmp_path / "c.pt")
    for a, b in zip(items, back, strict=True):
        assert (a.id, a.prompt, a.output, a.gt) == (b.id, b.prompt, b.output, b.gt)
        for name in ("video", "audio", "image", "mask"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y))
        assert set(a.labels) == set(b.labels)
    from crab_core.presets import crab_tiny
    from crab_core.tokenizer import CrabTokenizer
    from crab_core.training.data import tokenize_item

    tok = CrabTokenizer.train_bpe([it.output for it in items] * 5 + [it.prompt for it in items], crab_tiny())
    batch = collate([tokenize_item(it, tok) for it in back])
    assert sorted(i for g in batch.groups for i in g.index) == [0, 1, 2]
    assert batch.items[0].labels[-1].item() == tok.config.llm.eos_token_id
    assert (batch.items[0].labels[: len(batch.items[0].prompt_ids)] == -100).all()


def test_extra_per_task_adds_the_next_seeds_of_a_task_on_train_only():
    from crab_core.training.data import data_seeds, synth_seeds
    from crab_core.training.recipe import DataSpec

    base = DataSpec(synth_per_task=3)
    more = DataSpec(synth_per_task=3, extra_per_task={"avvp": 2, "s4": 5})
    tasks = ["ave", "avvp"]
    plain = data_seeds(base, tasks, "train", 3)
    got = data_seeds(more, tasks, "train", 3)
    assert plain == synth_seeds("train", tasks, 3, 0)
    assert got[: len(plain)] == plain  # the first samples are unchanged (a cache of them stays valid)
    assert got[len(plain) :] == synth_seeds("train", ["avvp"], 5, 0)[3:]  # s4 is not a task here
    assert len({s for s, _ in got}) == len(got)
    assert data_seeds(more, tasks, "val", 3) == synth_seeds("val", tasks, 3, 0)
