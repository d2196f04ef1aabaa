"""Media-token probes and the per-unit index embedding of the projectors."""

from __future__ import annotations

import torch

from crab_core.model.projector import QFormerProjector
from crab_core.training.probes import MediaProbes, frame_targets, probe_loss


def test_frame_targets_boxes_and_visibility():
    maps = torch.zeros(2, 8, 8, dtype=torch.int8)
    maps[0, 1:3, 2:6] = 1  # class 0: rows 1-2, cols 2-5
    maps[0, 5:8, 0:1] = 3  # class 2: rows 5-7, col 0
    visible, boxes = frame_targets(maps, num_classes=4)
    assert visible.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]]
    assert torch.allclose(boxes[0, 0], torch.tensor([2, 1, 6, 3]) / 8)
    assert torch.allclose(boxes[0, 2], torch.tensor([0, 5, 1, 8]) / 8)
    assert boxes[1].abs().sum() == 0 and boxes[0, 1].abs().sum() == 0


def test_probes_fit_informative_tokens_and_not_constant_ones():
    """A linear probe reaches a low loss only when the tokens carry the labels."""
    torch.manual_seed(0)
    n, k, q, d = 64, 4, 2, 16
    maps = torch.zeros(n, 8, 8, dtype=torch.int8)
    cls = torch.randint(0, k, (n,))
    for i, c in enumerate(cls):
        maps[i, 2:5, 1:4] = int(c) + 1
    informative = torch.zeros(n, q, d)
    informative[torch.arange(n), 0, cls] = 3.0
    constant = torch.ones(n, q, d)

    def fit(tokens):
        probes = MediaProbes(d, q, q, num_classes=k)
        opt = torch.optim.Adam(probes.parameters(), lr=0.05)
        for _ in range(150):
            loss = probe_loss(probes, [(tokens.reshape(-1, d), maps)], [])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    assert fit(informative) < 0.5 * fit(constant)


def test_audio_probe_loss_masks_gain_to_audible_classes():
    probes = MediaProbes(8, 2, 3, num_classes=2)
    tok = torch.zeros(4, 3, 8)
    audible = torch.tensor([[1.0, 0.0]] * 4)
    g1 = torch.tensor([[-10.0, 0.0]] * 4)
    g2 = torch.tensor([[-10.0, 50.0]] * 4)  # the gain of a silent class is ignored
    assert torch.allclose(probes.audio_loss(tok, audible, g1), probes.audio_loss(tok, audible, g2))


def test_unit_embedding_tells_frames_apart_and_is_off_by_default():
    torch.manual_seed(0)
    frame = torch.randn(1, 1, 16, 24)
    clip = frame.expand(1, 3, 16, 24).reshape(1, 48, 24)  # three identical frames
    plain = QFormerProjector("visual", 24, 16, 1, 2, 32, 2, d_model=8).eval()
    out = plain(clip, tokens_per_frame=16).reshape(3, 2, 8)
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2])
    assert not any("unit_embed" in k for k in plain.state_dict())
    timed = QFormerProjector("visual", 24, 16, 1, 2, 32, 2, d_model=8, unit_embeddings=2).eval()
    timed.load_state_dict(plain.state_dict(), strict=False)
    out2 = timed(clip, tokens_per_frame=16).reshape(3, 2, 8)
    emb = timed.unit_embed.weight
    assert torch.allclose(out2[0] - out[0], emb[0].expand(2, 8), atol=1e-6)
    assert torch.allclose(out2[1] - out[1], emb[1].expand(2, 8), atol=1e-6)
    assert torch.allclose(out2[2] - out[2], emb[1].expand(2, 8), atol=1e-6)  # past the table: last row
    audio = QFormerProjector("audio", 24, 16, 1, 2, 32, 2, d_model=8, unit_embeddings=4).eval()
    assert audio(torch.randn(2, 5, 6, 24)).shape == (2, 10, 8)


def test_seg_classes_are_the_classes_inside_the_target():
    import numpy as np

    from crab_core.training.data import NUM_CLASSES, seg_classes

    cmap = np.zeros((6, 6), np.int8)
    cmap[0:2, 0:2] = 3  # class 2
    cmap[4:6, 4:6] = 5  # class 4, outside the target
    target = np.zeros((1, 6, 6), np.uint8)
    target[0, 0:3, 0:3] = 1
    out = seg_classes(cmap, target)
    assert out.shape == (NUM_CLASSES,) and out.tolist() == [0, 0, 1] + [0] * (NUM_CLASSES - 3)
    assert seg_classes(cmap, np.zeros((6, 6))).sum() == 0  # empty target: no class


def test_seg_token_probe_fits_informative_states_only():
    from crab_core.training.probes import SegTokenProbe

    torch.manual_seed(0)
    n, k, d = 48, 4, 8
    cls = torch.randint(0, k, (n,))
    target = torch.nn.functional.one_hot(cls, k).float()
    informative = torch.randn(n, 6, d) * 0.1
    informative[torch.arange(n), 0, cls] += 3.0

    def fit(states):
        probe = SegTokenProbe(d, 6, num_classes=k)
        opt = torch.optim.Adam(probe.parameters(), lr=0.05)
        for _ in range(100):
            loss = probe(states, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    assert fit(informative) < 0.3 * fit(torch.ones(n, 6, d))


def test_image_probe_reads_grid_tokens_with_its_own_head():
    """With the image grid, the single frame's G*G tokens get their own box probe; without it the
    probes have no image head (the v5 initialisation is unchanged)."""
    assert MediaProbes(16, 2, 2).image is None
    torch.manual_seed(0)
    a = MediaProbes(16, 2, 2)
    torch.manual_seed(0)
    b = MediaProbes(16, 2, 2, image_tokens=4)
    assert torch.equal(a.video.weight, b.video.weight) and torch.equal(a.audio.weight, b.audio.weight)
    maps = torch.zeros(1, 8, 8, dtype=torch.int8)
    maps[0, 0:4, 0:4] = 2
    tok = torch.randn(4, 16, requires_grad=True)
    loss = probe_loss(b, [], [], [(tok, maps)])
    loss.backward()
    assert loss > 0 and b.image.weight.grad.abs().sum() > 0 and b.video.weight.grad.abs().sum() == 0
    assert probe_loss(a, [], [], [(tok, maps)]).item() == 0  # no image head: no image loss
