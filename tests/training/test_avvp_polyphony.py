"""AVVP polyphony report (benchmarks/avvp_polyphony.py): per-second recall by concurrent sources."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avvp_polyphony as ap  # noqa: E402

GT = {
    "audio": [{"event": "dog", "ranges": [[0, 3]]}, {"event": "bell", "ranges": [[2, 4]]}],
    "num_segments": 10,
}
META = {"objects": [{"class": "dog", "gain_db": -2.0}, {"class": "bell", "gain_db": -15.0}]}


def test_counts_split_by_polyphony_loudness_and_error_kind():
    # dog right at 0-2, bell missed at 2 (2 sources then), found at 3; a wrong time and a wrong class
    pred = (
        "<audio_event>dog,(0 2)</audio_event> <audio_event>bell,(3 5)</audio_event> "
        "<audio_event>car,(1 2)</audio_event>"
    )
    c = ap.item_counts(pred, GT, META)
    assert c["hit:poly=1"] == 3 and c["miss:poly=1"] == 0  # dog 0, dog 1, bell 3
    assert c["miss:poly=2"] == 2 and c["hit:poly=2"] == 0  # dog 2 and bell 2
    assert c["hit:gain=loud"] == 2 and c["miss:gain=loud"] == 1
    assert c["hit:gain=soft"] == 1 and c["miss:gain=soft"] == 1
    assert (c["tp"], c["wrong_time"], c["wrong_class"]) == (3, 1, 1)  # bell at 4, car
    s = ap.summarise(c)
    assert s["recall poly=1"] == {"value": 1.0, "n": 3}
    assert s["recall poly=2"] == {"value": 0.0, "n": 2}
    assert s["precision"] == {"value": 0.6, "n": 5}


def test_pairs_clip_to_the_clip_and_merge_layouts():
    assert ap.pairs([("Dog", [(8, 12)])]) == {("dog", 8), ("dog", 9)}
    one = ap.item_counts("<audio_event>dog,(0 3)</audio_event>", GT, META)
    per_second = ap.item_counts(
        " ".join(f"<audio_event>dog,({t} {t + 1})</audio_event>" for t in range(3)), GT, META
    )
    assert one == per_second
