"""Decoding honours padding: a batch decodes exactly like its samples one by one."""

from __future__ import annotations

import pytest
import torch

from crab_core.model.builder import build_model
from crab_core.model.crab import CrabSample


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("crab-tiny", seed=3).eval()
    with torch.no_grad():  # make LoRA active so the adapters take part
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return m


def _sample(model, n_text, n_frames, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    ids = cfg.token_ids
    text = torch.randint(3, cfg.base_vocab_size, (n_text,), generator=g)
    input_ids = torch.cat(
        [
            torch.tensor([1]),
            text[: n_text // 2],
            torch.tensor([ids["<video>"], ids["<audio>"]]),
            text[n_text // 2 :],
        ]
    )
    s = cfg.vision.image_size
    media = model.encode_media(
        video=torch.randn(n_frames, 3, s, s, generator=g), audio=torch.randn(n_frames, 98, 128, generator=g)
    )
    return CrabSample(input_ids=input_ids, media=media, task="ave")


def test_batched_equals_one_by_one(model):
    samples = [_sample(model, 7, 2, 0), _sample(model, 21, 3, 1), _sample(model, 12, 1, 2)]
    batch = model.generate(samples, max_new_tokens=12, return_logits=True)
    for i, s in enumerate(samples):
        one = model.generate([s], max_new_tokens=12, return_logits=True)
        n = int(one.decode.lengths[0])
        assert int(batch.decode.lengths[i]) == n
        assert torch.equal(batch.decode.sequences[i, :n], one.decode.sequences[0, :n])
        torch.testing.assert_close(
            batch.decode.step_logits[i, :n], one.decode.step_logits[0, :n], atol=2e-5, rtol=1e-4
        )


def test_generation_matches_teacher_forcing(model):
    s = _sample(model, 9, 2, 5)
    gen = model.generate([s], max_new_tokens=6, return_logits=True)
    n = int(gen.decode.lengths[0])
    full = CrabSample(
        input_ids=torch.cat([s.input_ids, gen.decode.sequences[0, :n]]), media=s.media, task="ave"
    )
    with torch.no_grad():
        logits = model([full]).logits[0]
    tf = logits[-n - 1 : -1]
    torch.testing.assert_close(tf, gen.decode.step_logits[0, :n], atol=2e-5, rtol=1e-4)
    assert torch.equal(tf.argmax(-1), gen.decode.sequences[0, :n])


def test_seg_mask_from_generated_tokens(model):
    """The mask uses the hidden states of the steps that produced the last 6 seg tokens."""
    from crab_core.model.llm import DecodeOutput

    s = _sample(model, 9, 2, 7)
    s.task = "s4"
    s.media = model.encode_media(
        video=torch.randn(2, 3, 112, 112),
        audio=torch.randn(2, 98, 128),
        image=torch.randn(1, 3, 112, 112),
        need_seg=True,
    )
    mask_ids = list(model.config.mask_token_ids)
    seq = torch.tensor([[30, mask_ids[0], *mask_ids, 31, 2]])  # 7 seg tokens: the last 6 are used
    hidden = torch.randn(1, seq.shape[1], model.config.llm.hidden_size)
    dec = DecodeOutput(sequences=seq, lengths=torch.tensor([seq.shape[1]]), step_hidden=hidden)
    masks = model._masks_from_generation([s], dec)
    frame = None if s.media.seg_frame is None else s.media.seg_frame.unsqueeze(0)
    expect = model.seg_module(
        hidden[:, 2:8], [f.unsqueeze(0) for f in s.media.seg_features], ["s4"], None, frames=frame
    )
    torch.testing.assert_close(masks[0], expect.pred_masks[0])
    assert masks[0].shape == (1, 112, 112)
    few = DecodeOutput(sequences=seq[:, :4], lengths=torch.tensor([4]), step_hidden=hidden[:, :4])
    assert model._masks_from_generation([s], few) == [None]  # fewer than 6 seg tokens: no mask
    with torch.no_grad():
        gen = model.generate([s], max_new_tokens=3)
    assert len(gen.masks) == 1
