"""The prompt-token mask decoder (``SegConfig.decoder="prompt"``): the prompt reaches the masks."""

from __future__ import annotations

import pytest
import torch

from crab_core.config import SegConfig
from crab_core.errors import ConfigError
from crab_core.model.seg.prompt_decoder import PromptMaskDecoder
from crab_core.model.seg.seg_module import SegModule


def _module(**kw) -> SegModule:
    torch.manual_seed(0)
    return SegModule(
        32,
        24,
        prompt_embed_dim=16,
        mlp_dim=32,
        num_heads=2,
        num_queries=4,
        low_res_mask_size=16,
        image_size=32,
        patch_size=8,
        num_avss_classes=5,
        loss_reduction="mean",
        decoder="prompt",
        pixel_dim=8,
        **kw,
    )


def _batch(b: int = 3):
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(b, 6, 32, generator=g)
    feats = [torch.randn(b, 2 * 16, 24, generator=g) for _ in range(2)]  # 2 frames of a 4x4 grid
    frames = torch.randn(b, 3, 32, 32, generator=g)
    gt = torch.stack(
        [
            (torch.rand(1, 32, 32, generator=g) > 0.7).float(),
            torch.randint(0, 5, (1, 32, 32), generator=g).float(),
            torch.zeros(1, 32, 32),
        ]
    )[:b]
    return emb, feats, ["s4", "avss", "ms3"][:b], gt, frames


def test_shapes_and_reference_parts_absent():
    model = _module()
    emb, feats, tasks, gt, frames = _batch()
    out = model(emb, feats, tasks, gt, frames=frames)
    assert [tuple(p.shape) for p in out.pred_masks] == [(1, 32, 32), (5, 32, 32), (1, 32, 32)]
    assert [tuple(lv[0].shape) for lv in out.level_logits] == [(1, 1, 16, 16), (1, 5, 16, 16), (1, 1, 16, 16)]
    keys = set(model.state_dict())
    assert not any(k.startswith("mask_decoder.") or k.startswith("no_mask_embed") for k in keys)
    assert "prompt_decoder.stem.net.0.weight" in keys


def test_batched_equals_one_by_one():
    model = _module().eval()
    emb, feats, tasks, _, frames = _batch()
    whole = model(emb, feats, tasks, frames=frames).pred_masks
    for i in range(3):
        single = model(
            emb[i : i + 1], [f[i : i + 1] for f in feats], tasks[i : i + 1], frames=frames[i : i + 1]
        )
        torch.testing.assert_close(single.pred_masks[0], whole[i], atol=1e-5, rtol=1e-5)


def test_prompt_changes_the_mask_and_gets_gradient():
    """The defect of the reference form on crab-tiny: a swapped prompt gave the same mask (issue #13)."""
    model = _module().eval()
    emb, feats, _, _, frames = _batch(2)
    same_image = [f[:1].expand(2, -1, -1) for f in feats]
    out = model(emb, same_image, ["s4", "s4"], frames=frames[:1].expand(2, -1, -1, -1))
    diff = (out.pred_masks[0] - out.pred_masks[1]).abs().max()
    assert diff > 1e-3, "two prompts on one image gave the same logits"
    emb = emb.clone().requires_grad_(True)
    model.train()
    gt = (torch.rand(2, 1, 32, 32) > 0.5).float()
    model(emb, same_image, ["s4", "s4"], gt, frames=frames[:1].expand(2, -1, -1, -1)).mask_loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_frame_stem_reaches_the_mask():
    model = _module().eval()
    emb, feats, tasks, _, frames = _batch()
    a = model(emb, feats, tasks, frames=frames).pred_masks[0]
    b = model(emb, feats, tasks, frames=torch.zeros_like(frames)).pred_masks[0]
    assert (a - b).abs().max() > 1e-4


def test_learns_to_select_the_named_object():
    """Two objects in every frame; the prompt names one: a short training must follow the prompt."""
    torch.manual_seed(0)
    model = _module()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    names = torch.randn(2, 6, 32)  # prompt of object 0 (left half) / object 1 (right half)

    def batch(n: int):
        which = torch.randint(0, 2, (n,))
        frames = torch.randn(n, 3, 32, 32) * 0.1
        gt = torch.zeros(n, 1, 32, 32)
        for i, w in enumerate(which.tolist()):
            gt[i, 0, 8:24, (4 if w == 0 else 20) : (12 if w == 0 else 28)] = 1
            frames[i, :, 8:24, 4:12] += 1.0
            frames[i, :, 8:24, 20:28] += 1.0
        feats = [torch.randn(n, 16, 24) * 0.1 for _ in range(2)]
        return names[which], feats, frames, gt

    for _ in range(150):
        emb, feats, frames, gt = batch(8)
        loss = model(emb, feats, ["s4"] * 8, gt, frames=frames).mask_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    emb, feats, frames, gt = batch(16)
    with torch.no_grad():
        pred = torch.stack([m[0] > 0 for m in model(emb, feats, ["s4"] * 16, frames=frames).pred_masks])
    inter = (pred & gt[:, 0].bool()).flatten(1).sum(1).float()
    union = (pred | gt[:, 0].bool()).flatten(1).sum(1).float()
    assert (inter / union).mean() > 0.6


def test_missing_frames_and_bad_config():
    model = _module()
    emb, feats, tasks, _, _ = _batch()
    with pytest.raises(ValueError, match="frames"):
        model(emb, feats, tasks)
    with pytest.raises(ConfigError):
        SegConfig(decoder="sam")
    with pytest.raises(ValueError, match="multiple of 4"):
        PromptMaskDecoder(16, 6, 2, num_heads=2, mlp_dim=32, image_size=30)
