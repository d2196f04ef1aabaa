"""Image loading and CLIP preprocessing, bit-exact against the reference golden."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from crab_core.errors import MediaError
from crab_core.media import clip_preprocess, load_image, load_image_uint8, resize_rgb

FRAMES = ["s4/0.jpg", "ms3/1.jpg", "avss/0.jpg", "ref-avs/7.jpg"]


def test_golden_bit_exact(fixtures_dir):
    inputs = load_file(str(fixtures_dir / "e_image_preprocess" / "inputs.safetensors"))
    outputs = load_file(str(fixtures_dir / "e_image_preprocess" / "outputs.safetensors"))
    image = inputs["image_uint8"].numpy()
    resized = resize_rgb(image, 56)
    np.testing.assert_array_equal(resized, outputs["resized_uint8"].numpy())
    pixels = clip_preprocess(image[None], 56)
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, outputs["pixel_values"])


def test_golden_through_file(fixtures_dir, tmp_path):
    inputs = load_file(str(fixtures_dir / "e_image_preprocess" / "inputs.safetensors"))
    outputs = load_file(str(fixtures_dir / "e_image_preprocess" / "outputs.safetensors"))
    path = tmp_path / "golden.png"
    Image.fromarray(inputs["image_uint8"].numpy()).save(path)
    assert torch.equal(load_image(path, 56), outputs["pixel_values"])


@pytest.mark.parametrize("name", FRAMES)
def test_real_frames_load(real_media_dir, name):
    path = real_media_dir / name
    x = load_image(path, 224)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    expected = np.asarray(Image.open(path).convert("RGB").resize((224, 224)))
    np.testing.assert_array_equal(load_image_uint8(path, 224), expected)
    assert torch.equal(x, clip_preprocess(expected[None], 224))


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((10, 12), 200, np.uint8), mode="L").save(gray)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((10, 12, 4), 50, np.uint8), mode="RGBA").save(rgba)
    assert load_image(gray, 8).shape == (1, 3, 8, 8)
    assert load_image(rgba, 8).shape == (1, 3, 8, 8)


def test_corrupt_image(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    with pytest.raises(MediaError, match="broken.png"):
        load_image(bad, 32)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    with pytest.raises(MediaError, match="notes.jpg"):
        load_image(text, 32)
