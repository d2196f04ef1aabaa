"""The image-grid option of the visual projector (``QFormerConfig.image_grid``): one token per cell of
the single frame, positions kept; off by default, so the reference path is untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crab_core.config import CrabConfig, QFormerConfig
from crab_core.errors import ConfigError
from crab_core.model.builder import build_model
from crab_core.model.projector import QFormerProjector
from crab_core.presets import crab_micro
from crab_core.training.features import encode_from_features


def _projector(grid: int) -> QFormerProjector:
    torch.manual_seed(0)
    cfg = QFormerConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_query_tokens=3, encoder_width=8, image_grid=grid,
    )  # fmt: skip
    return QFormerProjector.from_config(cfg, 12, "visual").eval()


def test_each_cell_becomes_one_token_that_sees_only_its_patches():
    proj = _projector(2)
    x = torch.randn(1, 16, 8)  # one 4 x 4 patch map
    out = proj(x, tokens_per_frame=16, image=True, return_cross_attentions=True)
    assert out.embeds.shape == (1, 4, 12) and proj.tokens_per_unit(image=True) == 4
    (w,) = out.cross_attentions
    assert w.shape == (1, 1, 4, 16)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 1, 4))
    cell_of = w[0, 0].argmax(0).reshape(4, 4)  # patch -> its cell, raster order
    assert cell_of.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    y = x.clone()
    y[0, 15] += torch.randn(8)  # bottom-right patch
    changed = (proj(y, tokens_per_frame=16, image=True) - out.embeds).abs().amax(-1)[0]
    assert changed[3] > 1e-4 and changed[:3].max() == 0


def test_off_by_default_and_for_video():
    with_grid, without = _projector(2), _projector(0)
    x = torch.randn(2, 32, 8)  # two frames of 16 patches
    shared = {k: v for k, v in with_grid.state_dict().items() if not k.startswith("cell_proj")}
    assert set(shared) == set(without.state_dict())
    without.load_state_dict(shared)
    for image in (False, True):  # without a grid, image=True is the Q-Former path
        torch.testing.assert_close(
            without(x, tokens_per_frame=16, image=image), without(x, tokens_per_frame=16)
        )
    torch.testing.assert_close(with_grid(x, tokens_per_frame=16), without(x, tokens_per_frame=16))
    assert with_grid(x, tokens_per_frame=16).shape == (2, 6, 12)  # video: Q = 3 per frame
    with pytest.raises(ValueError, match="square"):
        with_grid(torch.randn(1, 12, 8), tokens_per_frame=12, image=True)
    with pytest.raises(ConfigError):
        QFormerConfig(image_grid=-1)


def _grid_config():
    cfg = crab_micro()
    return dataclasses.replace(cfg, vl_qformer=dataclasses.replace(cfg.vl_qformer, image_grid=2))


def test_model_encodes_the_image_as_grid_tokens_on_every_path():
    model = build_model(_grid_config(), seed=0).eval()
    s = model.config.vision.image_size
    image = torch.randn(1, 3, s, s)
    direct = model.encode_media_batch(image=image.unsqueeze(0), need_seg=True)[0]
    assert direct.tokens_per_unit["image"] == 4 and direct.features["image"].shape == (4, 32)
    video = model.encode_media_batch(video=torch.randn(1, 2, 3, s, s))[0]
    assert video.tokens_per_unit["video"] == 2 and video.features["video"].shape == (4, 32)
    with torch.no_grad():  # the training path from cached tower features gives the same tokens
        feats = model.visual_encoder(image.unsqueeze(0))
    cached = encode_from_features(model, {"image": list(feats), "frame": image}, need_seg=True)[0]
    torch.testing.assert_close(cached.features["image"], direct.features["image"])
    assert cached.tokens_per_unit == direct.tokens_per_unit
    cfg = CrabConfig.from_json(model.config.to_json())  # config.json round trip keeps the option
    assert cfg.vl_qformer.image_grid == 2
    build_model(cfg, seed=1).load_state_dict(model.state_dict())  # the weights fit exactly


def test_interpret_paths_follow_the_grid():
    from crab_core.interpret.attention import visual_cross_attention
    from crab_core.interpret.inputs import visual_tokens

    model = build_model(_grid_config(), seed=0).eval()
    s = model.config.vision.image_size
    image = torch.randn(1, 3, s, s)
    ca = visual_cross_attention(model, image, image=True)
    assert ca.shape == (1, 4, 16)
    torch.testing.assert_close(ca.sum(-1), torch.ones(1, 4))
    tokens, _ = visual_tokens(model, image, image=True)
    with torch.no_grad():
        direct = model.encode_media_batch(image=image.unsqueeze(0))[0].features["image"]
    torch.testing.assert_close(tokens.detach(), direct)
