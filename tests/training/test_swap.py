"""The counterfactual-prompt mask loss (crab_core.training.swap)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from crab_core.model.seg.seg_module import SegModule
from crab_core.training.swap import prompt_swap_loss, swap_target


def test_swap_target_paints_the_named_classes():
    seg_map = np.zeros((4, 4), np.int8)
    seg_map[0, :2] = 3  # class 2
    seg_map[3, 3] = 5  # class 4
    classes = np.zeros(10, np.uint8)
    classes[2] = 1
    t = swap_target(seg_map, classes)
    assert t.shape == (1, 4, 4) and t.sum() == 2 and t[0, 0, :2].all()
    classes[4] = 1
    assert swap_target(seg_map, classes).sum() == 3
    assert swap_target(seg_map, np.zeros(10, np.uint8)).sum() == 0  # silent target: empty mask


def _setup(tasks):
    torch.manual_seed(0)
    seg = SegModule(
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
    )
    items, media = [], []
    for k, task in enumerate(tasks):
        seg_map = np.zeros((32, 32), np.int8)
        seg_map[:, k * 8 : (k + 1) * 8] = k + 1
        classes = np.zeros(10, np.uint8)
        classes[k] = 1
        items.append(
            SimpleNamespace(
                task=task, raw=SimpleNamespace(labels={"seg_map": seg_map, "seg_classes": classes})
            )
        )
        media.append(
            SimpleNamespace(
                seg_features=[torch.randn(16, 24), torch.randn(16, 24)], seg_frame=torch.randn(3, 32, 32)
            )
        )
    emb = torch.randn(len(tasks), 6, 32, requires_grad=True)
    out = SimpleNamespace(seg_embeddings=emb, seg_rows=list(range(len(tasks))))
    return SimpleNamespace(seg_module=seg), SimpleNamespace(items=items), media, out


def test_loss_equals_the_mask_loss_of_the_swapped_pairs_and_reaches_the_prompt():
    model, batch, media, out = _setup(["s4", "ms3", "avss"])  # avss is not eligible
    loss = prompt_swap_loss(model, batch, media, out)
    # pairs (0 <- 1) and (1 <- 0): item 1's classes are not in item 0's frame -> empty targets
    emb = torch.stack([out.seg_embeddings[1], out.seg_embeddings[0]])
    feats = [torch.stack([media[0].seg_features[s], media[1].seg_features[s]]) for s in range(2)]
    frames = torch.stack([media[0].seg_frame, media[1].seg_frame])
    expect = model.seg_module(emb, feats, ["ms3", "s4"], torch.zeros(2, 1, 32, 32), frames=frames).mask_loss
    torch.testing.assert_close(loss, expect)
    loss.backward()
    assert out.seg_embeddings.grad[:2].abs().sum() > 0 and out.seg_embeddings.grad[2].abs().sum() == 0


def test_fewer_than_two_eligible_rows_give_an_attached_zero():
    model, batch, media, out = _setup(["s4", "avss"])
    loss = prompt_swap_loss(model, batch, media, out)
    assert loss.item() == 0.0 and loss.requires_grad
