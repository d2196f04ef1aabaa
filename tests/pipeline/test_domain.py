"""SynthAV detection and the out-of-domain notice (crab_core.domain, docs/domain.md)."""

from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np
import pytest

from crab_core.domain import bundled_example_digests, is_synthav_file, out_of_domain_notice, synthav_only
from tests._helpers import REPO


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    """One written S4 sample: mp4, wav, png frame, png mask (small frames)."""
    from crab_core.synthav.generate import write_sample

    out = tmp_path_factory.mktemp("synth")
    row = write_sample(out, "test", 0, 0, "s4", 0, image_size=32)
    return out, row


def test_synth_writes_the_marker_into_every_file(synth_files):
    out, row = synth_files
    paths = [out / row["video"], out / row["audio"], out / row["image"], out / row["gt"]["mask"]]
    for p in paths:
        assert p.is_file() and is_synthav_file(p), p
    with wave.open(str(out / row["audio"])) as f:  # the marker chunk follows the samples: still a valid wav
        assert f.getframerate() == 16000 and f.getnframes() == 5 * 16000


def test_real_and_reencoded_files_are_not_synthav(synth_files, tmp_path):
    out, row = synth_files
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(out / row["video"], copy)
    assert is_synthav_file(copy)  # same bytes
    reenc = tmp_path / "reencoded.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(copy),
            "-map_metadata",
            "-1",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(reenc),
        ],
        check=True,
        timeout=60,
    )
    assert not is_synthav_file(reenc)  # the marker is gone: treated as a real clip
    other = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other)
    assert not is_synthav_file(other) and not is_synthav_file(tmp_path / "missing.wav")


def test_real_media_is_not_synthav(real_media_dir):
    for p in [
        real_media_dir / "s4" / "0.jpg",
        real_media_dir / "s4" / "audio.wav",
        real_media_dir / "ave" / "-67UNKFmRLk.mp4",
    ]:
        assert not is_synthav_file(p), p


def test_bundled_examples_are_synthav():
    media = [p for p in (REPO / "assets" / "examples").iterdir() if p.suffix in (".mp4", ".png")]
    assert len(media) >= 9 and len(bundled_example_digests()) == len(media)
    assert all(is_synthav_file(p) for p in media)


def test_notice_only_for_synthav_only_models(synth_files, real_media_dir):
    out, row = synth_files
    real = str(real_media_dir / "s4" / "0.jpg")
    synth = {"video": str(out / row["video"]), "audio": str(out / row["audio"]), "image": None}
    assert out_of_domain_notice("crab-tiny", {}, synth) is None
    notice = out_of_domain_notice("crab-tiny", {}, {**synth, "image": real})
    assert notice.startswith("out of domain: crab-tiny") and "the image is not a SynthAV clip" in notice
    assert out_of_domain_notice("crab-7b", {}, {"image": real}) is None
    assert synthav_only("my-model", {"recipe": {"data": {"synth_per_task": 10, "manifests": []}}})
    assert not synthav_only(
        "my-model", {"recipe": {"data": {"synth_per_task": 10, "manifests": ["real.jsonl"]}}}
    )
