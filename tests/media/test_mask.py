"""Ground-truth masks: binary (OpenCV semantics), AVSBench palette, index PNGs, kind detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from crab_core.errors import MediaError
from crab_core.media import (
    avsbench_palette,
    colours_to_classes,
    guess_mask_kind,
    load_binary_mask,
    load_index_mask,
    load_palette_mask,
    mask_from_any,
)

BINARY = ["s4/0.png", "ms3/1.png", "ref-avs/00007.png"]


def test_palette_generator():
    pal = avsbench_palette(71)
    assert pal.shape == (71, 3)
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[8].tolist() == [64, 0, 0]  # class 8: its bit 3 lands on bit 6 of red
    assert len({tuple(c) for c in pal.tolist()}) == 71  # all colours distinct


@pytest.mark.parametrize("name", BINARY)
def test_real_binary_masks(real_media_dir, name):
    mask = load_binary_mask(real_media_dir / name, 224)
    assert mask.shape == (1, 224, 224) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    # independent re-derivation of cv2.resize(INTER_NEAREST): src index = floor(dst * src / dst_size)
    gray = np.asarray(Image.open(real_media_dir / name)) > 0
    h, w = gray.shape
    rows = np.minimum((np.arange(224) * (h / 224)).astype(int), h - 1)
    cols = np.minimum((np.arange(224) * (w / 224)).astype(int), w - 1)
    np.testing.assert_array_equal(mask[0].numpy(), gray[np.ix_(rows, cols)].astype(np.float32))
    assert mask_from_any(real_media_dir / name, 224, "auto").dtype == torch.float32


def test_real_palette_mask(real_media_dir):
    path = real_media_dir / "avss/0.png"
    labels = load_palette_mask(path, 224, strict=True)
    assert labels.shape == (1, 224, 224) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) == {0, 14}
    rgb = np.asarray(Image.open(path).convert("RGB"))
    codes = np.unique(
        (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    )
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
    classes, unknown = colours_to_classes(colours[None])
    assert unknown == 0 and all(0 <= c < 71 for c in classes.ravel())
    assert guess_mask_kind(path) == "palette"
    assert torch.equal(mask_from_any(path, 224, "auto"), labels)


def test_binary_gray_rule_and_cv2_nearest(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (0, 1, 0)  # cv2 gray = round(0.587) = 1 -> foreground
    rgb[0, 2] = (1, 0, 0)  # cv2 gray = round(0.299) = 0 -> background
    rgb[2, 0] = (0, 0, 255)
    rgb[1, 1] = (255, 255, 255)  # never sampled by cv2's top-left nearest rule at 4 -> 2
    path = tmp_path / "m.png"
    Image.fromarray(rgb).save(path)
    mask = load_binary_mask(path, 2)
    assert mask[0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    pil = load_binary_mask(path, 2, resample="pil")  # centre-aligned: samples (1,1), (1,3), (3,1), (3,3)
    assert pil[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_palette_unknown_colours(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (128, 0, 0)
    rgb[4:, :4] = (1, 2, 3)
    path = tmp_path / "p.png"
    Image.fromarray(rgb).save(path)
    labels = load_palette_mask(path, 8)
    assert labels[0, 0, 0] == 1 and labels[0, 7, 0] == 0
    with pytest.raises(MediaError, match="outside"):
        load_palette_mask(path, 8, strict=True)


def test_index_masks(tmp_path):
    values = np.zeros((6, 6), np.uint8)
    values[:3, :3] = 3
    values[3:, 3:] = 70
    p_mode = Image.fromarray(values, mode="P")
    p_mode.putpalette(avsbench_palette(71).astype(np.uint8).ravel().tolist())
    p_path, l_path = tmp_path / "idx_p.png", tmp_path / "idx_l.png"
    p_mode.save(p_path)
    Image.fromarray(values, mode="L").save(l_path)
    for path in (p_path, l_path):
        labels = load_index_mask(path, 6, num_classes=71)
        assert labels.dtype == torch.int64 and np.array_equal(labels[0].numpy(), values)
    assert guess_mask_kind(p_path) == "index"
    assert torch.equal(mask_from_any(p_path, 6), load_index_mask(p_path, 6))
    assert load_index_mask(l_path, 3).shape == (1, 3, 3)
    with pytest.raises(MediaError, match=">= 50"):
        load_index_mask(l_path, 6, num_classes=50)
    rgb_path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb_path)
    with pytest.raises(MediaError, match="palette"):
        load_index_mask(rgb_path, 4)
    with pytest.raises(ValueError):
        mask_from_any(p_path, 4, "weird")


# ----------------------------------------------------------------------------- writing predicted masks
def test_binary_mask_to_image_nearest_and_logits(tmp_path):
    from crab_core.media.mask import mask_to_image

    mask = np.zeros((4, 4), bool)
    mask[:2, 2:] = True  # top-right quarter
    img = mask_to_image(mask, (40, 30))
    assert img.mode == "L" and img.size == (40, 30)
    arr = np.asarray(img)
    assert set(np.unique(arr)) == {0, 255} and arr[:15, 20:].min() == 255 and arr[15:].max() == 0
    logits = np.where(mask, 4.0, -4.0)[None].astype(np.float32)
    smooth = np.asarray(mask_to_image(mask, (40, 30), logits))
    assert smooth.shape == (30, 40) and abs((smooth > 0).mean() - 0.25) < 0.03
    path = tmp_path / "m.png"
    img.save(path)
    back = load_binary_mask(path, 4)[0].numpy().astype(bool)
    np.testing.assert_array_equal(back, mask)  # round trip through the GT loader


def test_class_map_to_palette_png(tmp_path):
    from crab_core.media.mask import mask_to_image

    classes = np.array([[0, 1], [8, 70]], np.int64)
    img = mask_to_image(classes, (6, 4))
    assert img.mode == "P" and img.size == (6, 4)
    path = tmp_path / "classes.png"
    img.save(path)
    assert guess_mask_kind(path) == "index"
    np.testing.assert_array_equal(load_index_mask(path, 2, num_classes=71)[0].numpy(), classes)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb[0, 5].tolist() == [128, 0, 0] and rgb[3, 0].tolist() == [64, 0, 0]  # AVSBench colours
    with pytest.raises(ValueError):
        mask_to_image(np.array([[300]]), (2, 2))


def test_overlay_colours_only_the_mask():
    from crab_core.media.mask import mask_to_image, overlay_mask

    frame = np.full((4, 6, 3), 100, np.uint8)
    mask = np.zeros((2, 2), bool)
    mask[0, 0] = True
    out = overlay_mask(frame, mask_to_image(mask, (6, 4)), alpha=0.5)
    assert out[0, 0].tolist() == [178, 50, 50] and out[3, 5].tolist() == [100, 100, 100]
    with pytest.raises(ValueError):
        overlay_mask(frame, mask_to_image(mask, (5, 4)))
