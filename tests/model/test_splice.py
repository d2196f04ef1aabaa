"""Pure splicing: placement, padding, positions, labels, kinds and count checks."""

from __future__ import annotations

import pytest
import torch

from crab_core.errors import TaskError
from crab_core.model.splice import IGNORE_INDEX, KIND_AUDIO, KIND_TEXT, KIND_VIDEO, splice_batch

V, A = 90, 91
KINDS = {V: KIND_VIDEO, A: KIND_AUDIO}


def embed(ids):
    return ids.float().unsqueeze(-1).repeat(1, 4)


def test_splice_places_features_and_left_pads():
    ids0 = torch.tensor([1, 5, V, 6, A, 7])
    ids1 = torch.tensor([1, V, 8])
    f0 = {V: [torch.full((4, 4), -1.0)], A: [torch.full((2, 4), -2.0)]}
    f1 = {V: [torch.full((2, 4), -3.0)]}
    labels = [torch.tensor([IGNORE_INDEX] * 5 + [7]), torch.tensor([IGNORE_INDEX, IGNORE_INDEX, 8])]
    b = splice_batch(
        [ids0, ids1],
        [f0, f1],
        embed,
        pad_token_id=2,
        placeholder_kinds=KINDS,
        labels=labels,
        tokens_per_unit={V: 2, A: 1},
    )
    assert b.inputs_embeds.shape == (2, 10, 4)
    assert b.attention_mask.tolist() == [[1] * 10, [0] * 6 + [1] * 4]
    assert b.position_ids[1].tolist() == [0] * 6 + [0, 1, 2, 3]
    assert b.position_ids[0].tolist() == list(range(10))
    assert b.inputs_embeds[0, 2:6, 0].tolist() == [-1.0] * 4
    assert b.inputs_embeds[1, :6, 0].tolist() == [2.0] * 6  # pad embedding
    assert b.labels[0].tolist() == [IGNORE_INDEX] * 9 + [7]
    assert b.kinds[0].tolist() == [KIND_TEXT] * 2 + [KIND_VIDEO] * 4 + [KIND_TEXT] + [KIND_AUDIO] * 2 + [
        KIND_TEXT
    ]
    assert b.unit_index[0].tolist() == [-1, -1, 0, 0, 1, 1, -1, 0, 1, -1]
    assert b.token_ids[0, 2:6].tolist() == [V] * 4


def test_count_mismatch_raises():
    with pytest.raises(TaskError, match="appears 2"):
        splice_batch([torch.tensor([1, V, V])], [{V: [torch.zeros(2, 4)]}], embed, 2, KINDS)
    with pytest.raises(TaskError):
        splice_batch([torch.tensor([1, 3])], [{V: [torch.zeros(2, 4)]}], embed, 2, KINDS)


def test_seg_token_mask_selects_preceding_positions():
    m0, m1 = 50, 51
    b = splice_batch([torch.tensor([1, V, 4, m0, m1, 9])], [{V: [torch.zeros(3, 4)]}], embed, 2, KINDS)
    sel = b.seg_token_mask([m0, m1])
    assert torch.nonzero(sel[0]).flatten().tolist() == [4, 5]
