"""The one scoring path: eval, the trainer's evaluation and head ablation give the same numbers on the
same rows; AVSS index / palette masks and the class count of the config; the Ref-AVS baselines."""

from __future__ import annotations

import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from crab_core.errors import TaskError
from crab_core.evaluation import evaluate
from crab_core.interpret.ablation import Scorer
from crab_core.media.mask import avsbench_palette
from crab_core.metrics import majority_baseline
from crab_core.metrics.scoring import load_gt, mask_loader_kind
from crab_core.metrics.segmentation import AVSSMetric, mask_iou
from crab_core.pipeline import TaskResult
from crab_core.tasks import parse
from crab_core.training.data import RawItem, manifest_raw
from crab_core.training.evaluate import score_items

S = 16  # GT side (and the trainer's image size)
CLASSES = 20  # not the default 71: the class count must come from the model config


def _class_map(seed: int) -> np.ndarray:
    """(S, S) classes 0 / 3 / 7 / 12 in blocks."""
    rng = np.random.default_rng(seed)
    m = np.zeros((S, S), np.int64)
    for c in (3, 7, 12):
        y, x = rng.integers(0, S - 6, 2)
        m[y : y + 6, x : x + 6] = c
    return m


def _write(path: Path, arr: np.ndarray, mode: str) -> str:
    Image.fromarray(arr, mode=mode).save(path)
    return str(path)


def _binary_logits(gt: np.ndarray, seed: int, side: int) -> np.ndarray:
    """(1, side, side) logits that mostly agree with ``gt`` (flipped blocks, graded confidence)."""
    rng = np.random.default_rng(seed)
    small = gt[:: S // side, :: S // side] if side < S else gt
    lg = np.where(small > 0, 2.0, -2.0) + rng.normal(0, 1.5, small.shape)
    return lg[None].astype(np.float32)


def _class_logits(classes: np.ndarray, seed: int) -> np.ndarray:
    """(CLASSES, S, S) logits whose argmax is ``classes`` with some pixels changed."""
    rng = np.random.default_rng(seed)
    pred = classes.copy()
    flip = rng.random(pred.shape) < 0.2
    pred[flip] = rng.integers(0, CLASSES, flip.sum())
    lg = rng.normal(0, 0.1, (CLASSES, S, S)).astype(np.float32)
    np.put_along_axis(lg, pred[None], 5.0, axis=0)
    return lg


def _seg_result(task: str, logits: np.ndarray | None) -> TaskResult:
    text = "<mask_start><mask_0><mask_end>"
    mask = None if logits is None else (logits.argmax(0) if logits.shape[0] > 1 else logits[0] > 0)
    return TaskResult(task, text, parse(task, text), mask=mask, mask_logits=logits)


@pytest.fixture(scope="module")
def rows_and_results(tmp_path_factory):
    """Manifest rows (absolute paths) and the answer a model gave to each."""
    d = tmp_path_factory.mktemp("scoring")
    frame = _write(d / "frame.png", np.full((S, S, 3), 90, np.uint8), "RGB")
    audio = str(d / "a.wav")
    with wave.open(audio, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.random.default_rng(0).normal(0, 1000, 32000)).astype(np.int16).tobytes())
    media = {"image": frame, "audio": audio, "frame_index": 0}
    rows, results = [], []
    for i, task in enumerate(("s4", "s4", "ms3", "ref-avs", "ref-avs", "ref-avs")):
        gt_mask = np.zeros((S, S), np.uint8)
        null = task == "ref-avs" and i == 5
        if not null:
            gt_mask[2 + i : 9 + i, 3:12] = 255
        path = _write(d / f"bin{i}.png", gt_mask, "L")
        side = 8 if i % 2 else S  # some predictions at another side: resized to the GT's
        lg = None if i == 2 else _binary_logits(gt_mask, i, side)  # ms3: no mask decoded
        gt = {"mask": path, "object": "drum", "null": null}
        question = {"question": "the drum"} if task == "ref-avs" else {}
        rows.append({"id": f"r{i}", "task": task, "gt": gt, "output": "", **question, **media})
        results.append(_seg_result(task, lg))
    palette = avsbench_palette(CLASSES).astype(np.uint8)
    for i, fmt in enumerate((None, "index", "palette")):
        classes = _class_map(10 + i)
        if fmt == "palette":
            path = _write(d / f"cls{i}.png", palette[classes], "RGB")
        else:
            path = _write(d / f"cls{i}.png", classes.astype(np.uint8), "L")
        gt = {"mask": path} if fmt is None else {"mask": path, "mask_format": fmt}
        rows.append({"id": f"c{i}", "task": "avss", "gt": gt, "output": "", **media})
        results.append(_seg_result("avss", _class_logits(classes, 20 + i)))
    ave_gt = {
        "event": "drum",
        "range": [2, 5],
        "segments": ["background"] * 2 + ["drum"] * 3 + ["background"] * 5,
    }
    for i, text in enumerate(
        ("<event> drum </event> <range> 2,5 </range>", "<event> dog </event> <range> 0,9 </range>")
    ):
        rows.append({"id": f"e{i}", "task": "ave", "gt": ave_gt, "output": ""})
        results.append(TaskResult("ave", text, parse("ave", text)))
    avqa = [
        ("yes", "<answer> yes </answer>"),
        ("two", "<answer> three </answer>"),
        ("no", "<answer> no </answer>"),
    ]
    for i, (ans, text) in enumerate(avqa):
        gt = {"answer": ans, "question_type": "Audio/Existential"}
        rows.append({"id": f"q{i}", "task": "avqa", "question": "is it?", "gt": gt, "output": ""})
        results.append(TaskResult("avqa", text, parse("avqa", text)))
    return rows, results


class _FixedPipeline:
    """``run`` returns the prepared answers in row order; a model config with CLASSES AVSS classes."""

    def __init__(self, results):
        self.results = iter(results)
        self.model = SimpleNamespace(config=SimpleNamespace(seg=SimpleNamespace(num_avss_classes=CLASSES)))

    def run(self, task, **_):
        return next(self.results)


def _merged(nested: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: v for vals in nested.values() for k, v in vals.items()}


def _three_ways(rows, results):
    """Per task: (eval metrics, ablation metrics, trainer metrics, eval baseline, trainer baseline)."""
    report = evaluate(_FixedPipeline(results), rows, progress=False)
    assert not report.errors, report.errors
    out = {}
    for task in report.metrics:
        pairs = [(r, res) for r, res in zip(rows, results) if r["task"] == task]
        scorer = Scorer(task, num_classes=CLASSES)
        for r, res in pairs:
            scorer.update(res, r["gt"])
        ablation = {}
        for k, v in scorer.compute().items():
            ablation[k.split(".", 1)[1]] = v
        items = [
            SimpleNamespace(
                raw=manifest_raw(r, Path("/"), S)
                if r["gt"].get("mask")
                else RawItem(r["id"], task, "", "", gt=dict(r["gt"]))
            )
            for r, _ in pairs
        ]
        trainer, base = score_items(task, items, [(res.text, res.mask_logits) for _, res in pairs], CLASSES)
        out[task] = (report.metrics[task], ablation, _merged(trainer), report.baselines[task], base)
    return out


def test_eval_trainer_and_ablation_agree(rows_and_results):
    rows, results = rows_and_results
    got = _three_ways(rows, results)
    assert set(got) == {"s4", "ms3", "ref-avs", "avss", "ave", "avqa"}
    for task, (ev, abl, tr, ev_base, tr_base) in got.items():
        assert ev.keys() == abl.keys() == tr.keys(), task
        for k in ev:
            assert abl[k] == pytest.approx(ev[k], abs=1e-12), (task, k)
            assert tr[k] == pytest.approx(ev[k], abs=1e-12), (task, k)
        assert ev_base == pytest.approx(tr_base, abs=1e-12), task
    # the values themselves, computed here without the scoring path
    assert got["ave"][0]["accuracy"] == pytest.approx((10 + 1) / 20)  # "dog 0-9" is right at second 9
    assert got["avqa"][0]["accuracy"] == pytest.approx(2 / 3)
    assert got["ms3"][0]["miou"] < 0.1  # no mask decoded: an empty prediction of a 7x9 object
    s4 = [(r, res) for r, res in zip(rows, results) if r["task"] == "s4"]
    ious = []
    for r, res in s4:
        gt = np.asarray(Image.open(r["gt"]["mask"])) > 0
        lg = res.mask_logits[0]
        up = np.kron(lg, np.ones((S // lg.shape[0],) * 2))  # bilinear differs from this only near edges
        ious.append(mask_iou(up > 0, gt)[0])
    assert got["s4"][0]["miou"] == pytest.approx(np.mean(ious), abs=0.08)
    assert 0 < got["ref-avs"][0]["s"] < 1 and "s" in got["ref-avs"][3]  # null S and its baseline


def test_avss_index_and_palette_masks_in_ablation(rows_and_results):
    """Ablation read AVSS GT masks as binary unless ``mask_format`` was ``index`` (and palette PNGs
    always as binary): a perfect answer scored well below 1. Now: the same rule as eval."""
    rows, _ = rows_and_results
    for r in (r for r in rows if r["task"] == "avss"):
        gt_classes = load_gt("avss", r["gt"], num_classes=CLASSES)["mask"]
        assert set(np.unique(gt_classes)) == {0, 3, 7, 12}, r["gt"]
        logits = np.full((CLASSES, S, S), -5.0, np.float32)
        np.put_along_axis(logits, gt_classes[None], 5.0, axis=0)
        scorer = Scorer("avss", num_classes=CLASSES)
        scorer.update(_seg_result("avss", logits), r["gt"])
        got = scorer.compute()
        assert got["avss_seg.miou_present"] == pytest.approx(1.0), r["gt"]
        assert got["avss_seg.miou"] == pytest.approx(4 / CLASSES), r["gt"]  # 4 classes of CLASSES present


def test_class_count_comes_from_the_config(rows_and_results):
    rows, results = rows_and_results
    avss = [(r, res) for r, res in zip(rows, results) if r["task"] == "avss"]
    report = evaluate(_FixedPipeline([res for _, res in avss]), [r for r, _ in avss], progress=False)
    metric = AVSSMetric(CLASSES)
    for r, res in avss:
        metric.update(res.mask_logits, load_gt("avss", r["gt"], num_classes=CLASSES)["mask"])
    assert report.metrics["avss"] == pytest.approx(metric.compute())
    with pytest.raises(ValueError, match="channels"):  # a 20-class answer is not scored as 71 classes
        Scorer("avss", num_classes=71).update(avss[0][1], avss[0][0]["gt"])


def test_load_gt_kinds_and_errors(tmp_path):
    path = _write(tmp_path / "m.png", np.array([[0, 200], [0, 0]], np.uint8), "L")
    binary = load_gt("s4", {"mask": path})["mask"]
    assert binary.dtype == np.float32 and binary.tolist() == [[0, 1], [0, 0]]
    assert load_gt("avss", {"mask": path}, num_classes=256)["mask"].tolist() == [[0, 200], [0, 0]]
    assert load_gt("s4", {"mask": "m.png"}, root=tmp_path, size=4)["mask"].shape == (4, 4)
    assert (
        mask_loader_kind("avss", {}) == "index" and mask_loader_kind("ms3", {"mask_format": "x"}) == "binary"
    )
    assert mask_loader_kind("avss", {"mask_format": "palette"}) == "palette"
    with pytest.raises(TaskError, match="mask_format"):
        load_gt("avss", {"mask": path, "mask_format": "rgb"})
    with pytest.raises(TaskError, match="no mask"):
        mask_loader_kind("ave", {})
    with pytest.raises(TaskError, match="no mask"):
        load_gt("s4", {"mask": None})
    assert load_gt("ref-avs", {"mask": None, "null": True})["mask"] is None
    assert load_gt("ave", {"event": "dog"}) == {"event": "dog"}


def test_ref_avs_baseline_leaves_null_rows_out_and_has_null_s():
    obj = np.zeros((10, 10))
    obj[:4, :5] = 1  # 20% of the frame
    empty = np.zeros((10, 10))
    gts = [{"mask": obj, "null": False}] * 2 + [{"mask": empty, "null": True}] * 3
    base = majority_baseline("ref-avs", gts)
    # the full frame wins on the rows with an object (IoU 0.2 vs 0 for the empty mask); counting the
    # null rows (IoU 1 for an empty prediction) made the empty mask win with 0.6
    assert base["miou"] == pytest.approx(0.2, abs=1e-6)
    assert base["s"] == pytest.approx(1.0)  # the same full-frame mask on the null rows
    only_null = majority_baseline("ref-avs", gts[2:])
    assert only_null == {"s": 0.0}
    assert "s" not in majority_baseline("s4", [obj])
