"""Miniature copies of each official benchmark layout, built by the tests in a temporary folder.

Each builder writes the release's annotation files (same names, columns and formats as the real ones;
the importers' docstrings cite where each is published) with a few good rows, some malformed rows and
some rows whose media are missing, and copies real media from ``../shared/real-media`` (never into
the repository). It returns what the importer must report: rows per task and skipped rows per reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _small_jpg(src: Path, dst: Path, side: int = 160) -> None:
    """A reduced copy of a real frame (the miniature stays small; the decoder path is the same)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").resize((side * 16 // 9, side)).save(dst, quality=90)


def _mask(src: Path | None, dst: Path, mode: str = "L", side: int = 160) -> None:
    """A resized copy of a real mask (NEAREST keeps its values), or an empty one when ``src`` is None."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    size = (side * 16 // 9, side)
    if src is None:
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(dst)
        return
    with Image.open(src) as im:
        im.convert(mode).resize(size, Image.NEAREST).save(dst)


def build_ave(root: Path, media: Path) -> dict:
    """AVE_Dataset: Annotations.txt / *Set.txt (``&``-separated, header line) + AVE/<id>.mp4."""
    head = "Category&VideoID&Quality&StartTime&EndTime\n"
    lines = [
        "Male speech, man speaking&-67UNKFmRLk&good&0&8",  # real clip, real label (shared/real-media)
        "Church bell&RUhOCu3LNXM&good&2&10",
        "Church bell&RUhOCu3LNXM&good&0&3",  # same video twice (the release has 45 such ids)
        "Dog&no_such_video&good&0&10",  # missing video
        "Dog&RUhOCu3LNXM&good&0",  # 4 fields
        "Dog&RUhOCu3LNXM&good&7&3",  # start >= end
        "Dog&RUhOCu3LNXM&good&0&12",  # past 10 s
    ]
    _write(root / "testSet.txt", head + "\n".join(lines) + "\n")
    _write(root / "trainSet.txt", head + lines[1] + "\n")
    _write(root / "valSet.txt", head + lines[0] + "\n")
    _write(root / "Annotations.txt", head + "\n".join(lines[:3]) + "\n")
    for vid in ("-67UNKFmRLk", "RUhOCu3LNXM"):
        _copy(media / "ave" / "-67UNKFmRLk.mp4", root / "AVE" / f"{vid}.mp4")
    return {"rows": {"ave": 3}, "skipped": {"missing": 1, "malformed": 3}}


def build_avvp(root: Path, media: Path) -> dict:
    """LLP: tab-separated weak / dense CSVs + LLP_dataset/video/<id11>.mp4."""
    _write(
        root / "AVVP_test_pd.csv",
        "filename\tevent_labels\n"
        "4YdbENYcIyE_23_33\tBaby_cry_infant_cry\n"
        "KSRjje7GH44_60_70\tBlender,Speech\n"
        "McVcuryKUp4_160_170\tMotorcycle,Speech\n"  # no video
        "short\tSpeech\n",  # malformed filename
    )
    _write(root / "AVVP_val_pd.csv", "filename\tevent_labels\nKSRjje7GH44_60_70\tBlender,Speech\n")
    _write(root / "AVVP_train.csv", "filename\tevent_labels\n4YdbENYcIyE_23_33\tSpeech\n")
    _write(
        root / "AVVP_eval_audio.csv",
        "filename\tonset\toffset\tevent_labels\n"
        "4YdbENYcIyE_23_33\t0\t4\tBaby_cry_infant_cry\n"
        "KSRjje7GH44_60_70\t8\t10\tBlender\n"
        "KSRjje7GH44_60_70\t0\t8\tSpeech\n"
        "KSRjje7GH44_60_70\t9\t9\tSpeech\n"  # empty range (as in the release)
        "KSRjje7GH44_60_70\tx\t9\tSpeech\n",  # malformed onset
    )
    _write(
        root / "AVVP_eval_visual.csv",
        "filename\tonset\toffset\tevent_labels\n"
        "4YdbENYcIyE_23_33\t0\t10\tBaby_cry_infant_cry\n"
        "KSRjje7GH44_60_70\t0\t2\tBlender\n"
        "KSRjje7GH44_60_70\t5\t10\tBlender\n",
    )
    for vid in ("4YdbENYcIyE", "KSRjje7GH44"):
        _copy(media / "ave" / "-67UNKFmRLk.mp4", root / "LLP_dataset" / "video" / f"{vid}.mp4")
    return {"rows": {"avvp": 2}, "skipped": {"missing": 1, "malformed": 2, "empty-range": 1}}


def build_music_avqa(root: Path, media: Path) -> dict:
    """MUSIC-AVQA: json_update/avqa-<split>.json (stringified type / templ_values) + video/<id>.mp4."""

    def q(vid, qid, kind, text, templ, answer, deleted=0):
        return {
            "video_id": vid,
            "question_id": qid,
            "type": json.dumps(kind),
            "question_content": text,
            "templ_values": json.dumps(templ),
            "question_deleted": deleted,
            "anser": answer,
        }

    questions = [
        q(
            "00006835",
            1,
            ["Audio-Visual", "Location"],
            "What is the <LR> instrument of the <FL> sounding instrument?",
            ["left", "first"],
            "saxophone",
        ),
        q(
            "00000093",
            12,
            ["Audio", "Counting"],
            "How many musical instruments were heard throughout the video?",
            [],
            "one",
        ),
        q(
            "00000404", 13, ["Visual", "Counting"], "How many <Object> are in the video?", ["violin"], "two"
        ),  # no video
        q(
            "00000093", 14, ["Audio-Visual", "Existential"], "Is the <Object> always playing?", [], "no"
        ),  # 1 slot, 0 values
        q("00000093", 15, ["Audio-Visual", "Existential"], "Is there a voiceover?", [], "yes", deleted=1),
        {"video_id": "00000093", "question_id": 16},  # missing fields
    ]
    _write(root / "json_update" / "avqa-test.json", json.dumps(questions, indent=1))
    for vid in ("00006835", "00000093"):
        _copy(media / "ave" / "-67UNKFmRLk.mp4", root / "video" / f"{vid}.mp4")
    return {"rows": {"avqa": 2}, "skipped": {"missing": 1, "malformed": 2, "deleted": 1}}


def _avs_clip(folder: Path, media: Path, frames: int, binary_src: Path | None, rgb_src: Path) -> None:
    for i in range(frames):
        _small_jpg(media / "s4" / "0.jpg", folder / "frames" / f"{i}.jpg")
        _mask(rgb_src, folder / "labels_rgb" / f"{i}.png", mode="RGB")
        if binary_src is not None:
            _mask(binary_src, folder / "labels_semantic" / f"{i}.png")
    _copy(media / "s4" / "audio.wav", folder / "audio.wav")


def build_avsbench_semantic(root: Path, media: Path) -> dict:
    """AVSBench-semantic: metadata.csv, label2idx.json, <label>/<uid>/{frames,labels_rgb,labels_semantic}."""
    _write(
        root / "metadata.csv",
        "vid,uid,s_min,s_sec,a_obj,split,label\n"
        "_4R3qHn1n50,_4R3qHn1n50_0_5000,0,0,dog,test,v1s\n"
        "3vheOi4y540,3vheOi4y540_1,0,0,guitar,test,v1m\n"
        "abcdefghijk,abcdefghijk_2,0,0,piano,test,v2\n"
        "trainclip00,trainclip00_0_5000,0,0,dog,train,v1s\n"
        "broken,row\n",
    )
    _write(root / "label2idx.json", json.dumps({f"class{i}": i for i in range(71)}))
    s4, ms3, avss = media / "s4" / "0.png", media / "ms3" / "1.png", media / "avss" / "0.png"
    _avs_clip(root / "v1s" / "_4R3qHn1n50_0_5000", media, 5, s4, avss)
    _avs_clip(root / "v1m" / "3vheOi4y540_1", media, 5, ms3, avss)
    (root / "v1m" / "3vheOi4y540_1" / "labels_semantic" / "3.png").unlink()  # falls back to labels_rgb
    _avs_clip(root / "v2" / "abcdefghijk_2", media, 10, None, avss)
    (root / "v2" / "abcdefghijk_2" / "labels_rgb" / "9.png").unlink()  # missing mask
    _avs_clip(root / "v1s" / "trainclip00_0_5000", media, 1, s4, avss)
    return {
        "s4": {"rows": {"s4": 5}, "skipped": {"malformed": 1}},
        "ms3": {"rows": {"ms3": 5}, "skipped": {"malformed": 1}},
        "avss": {"rows": {"avss": 19}, "skipped": {"malformed": 1, "missing": 1}},
        "s4-train": {"rows": {"s4": 1}, "skipped": {"malformed": 1}},
    }


def build_avsbench_object(root: Path, media: Path) -> dict:
    """AVSBench-object: Single-source / Multi-sources meta CSVs, visual_frames, gt_masks, audio_wav."""
    s4 = root / "Single-source"
    _write(
        s4 / "s4_meta_data.csv",
        "name,start,category,split\n-0UOJ4aVlt0,0,dog_barking,test\nmissing01,0,dog_barking,test\n",
    )
    data = s4 / "s4_data"
    for k in range(1, 6):
        _small_jpg(
            media / "s4" / "0.jpg",
            data / "visual_frames/test/dog_barking/-0UOJ4aVlt0" / f"-0UOJ4aVlt0_{k}.png",
        )
        _mask(media / "s4" / "0.png", data / "gt_masks/test/dog_barking/-0UOJ4aVlt0" / f"-0UOJ4aVlt0_{k}.png")
    _copy(media / "s4" / "audio.wav", data / "audio_wav/test/dog_barking/-0UOJ4aVlt0.wav")
    ms3 = root / "Multi-sources"
    _write(ms3 / "ms3_meta_data.csv", "name,split\n2IoF4ClnbPk_1,test\n")
    data = ms3 / "ms3_data"
    for k in range(1, 6):
        _small_jpg(
            media / "ms3" / "1.jpg", data / "visual_frames/2IoF4ClnbPk_1" / f"2IoF4ClnbPk_1.mp4_{k}.png"
        )
        _mask(
            media / "ms3" / "1.png", data / "gt_masks/test/2IoF4ClnbPk_1" / f"2IoF4ClnbPk_1_{k}.png", mode="P"
        )
    _copy(media / "ms3" / "audio.wav", data / "audio_wav/test/2IoF4ClnbPk_1.wav")
    return {"s4": {"rows": {"s4": 5}, "skipped": {"missing": 5}}, "ms3": {"rows": {"ms3": 5}, "skipped": {}}}


def build_ref_avs(root: Path, media: Path) -> dict:
    """Ref-AVS: metadata.csv (vid,uid,split,fid,exp), media/<vid>/{frames,audio.wav}, gt_mask/<vid>/fid_*."""
    cat, dryer = "--KCIeTv6PM_14000_24000", "--iSerV5DbY_68000_78000"
    _write(
        root / "metadata.csv",
        "vid,uid,split,fid,exp\n"
        f"{cat},{cat}_cat_1,test_s,0,The object making the loudest sound.\n"
        f"{dryer},{dryer}_hair-dryer_1,test_u,1,The first object to make a sound.\n"
        f"{dryer},{dryer}_hair-dryer_2,test_n,2,The dog barking loudly.\n"
        f"{cat},{cat}_cat_2,train,3,The cat.\n"
        "x,nounderscore,test_s,0,Something.\n"
        "x,only,two,fields\n",
    )
    for vid, fids in ((cat, (0, 3)), (dryer, (1, 2))):
        for i in range(10):
            _small_jpg(media / "ref-avs" / "7.jpg", root / "media" / vid / "frames" / f"{i}.jpg")
            for fid in fids:
                src = None if fid == 2 else media / "ref-avs" / "00007.png"
                _mask(src, root / "gt_mask" / vid / f"fid_{fid}" / f"0000{i}.png")
        _copy(media / "ref-avs" / "audio.wav", root / "media" / vid / "audio.wav")
    (root / "gt_mask" / "--KCIeTv6PM_14000_24000" / "fid_0" / "00004.png").unlink()
    return {
        "test": {"rows": {"ref-avs": 29}, "skipped": {"malformed": 2, "missing": 1}},
        "test_s": {"rows": {"ref-avs": 9}, "skipped": {"malformed": 2, "missing": 1}},
        "test_u": {"rows": {"ref-avs": 10}, "skipped": {"malformed": 1}},
        "test_n": {"rows": {"ref-avs": 10}, "skipped": {"malformed": 1}},
    }


def build_all(data_root: Path, media: Path) -> None:
    """Every miniature under the folder names ``benchmarks/paper_table.py --data-root`` looks for."""
    data_root = Path(data_root)
    build_ave(data_root / "AVE_Dataset", media)
    build_avvp(data_root / "LLP", media)
    build_music_avqa(data_root / "MUSIC-AVQA", media)
    build_avsbench_semantic(data_root / "AVSBench", media)
    build_ref_avs(data_root / "REFAVS", media)


if __name__ == "__main__":  # python -m tests.data.layouts DIR [REAL_MEDIA]
    import sys

    from tests.conftest import shared_dir

    build_all(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else shared_dir() / "real-media")
