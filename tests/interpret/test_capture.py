"""Routing capture: exact outputs with and without capture, no residue, trace layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crab_core.interpret.ablation import Variant, generate, seg_token_ids
from crab_core.interpret.capture import capture_routing
from crab_core.interpret.inputs import encode, make_sample
from crab_core.model.ilora_inject import iter_ilora_layers, routing


def _decode(pipe, raw, media, n=5):
    gen = pipe.model.generate([make_sample(raw, media)], max_new_tokens=n, return_logits=True)
    return gen


def _routings(pipe):
    return [layer.routing for _, layer in iter_ilora_layers(pipe.model.llm)]


def test_outputs_identical_with_and_without_capture(tiny_pipe, ave_raw):
    media = encode(tiny_pipe.model, ave_raw)
    ref = _decode(tiny_pipe, ave_raw, media)
    with capture_routing(tiny_pipe.model) as rec:
        cap = _decode(tiny_pipe, ave_raw, media)
    assert rec.num_forwards == 6  # prefill + 5 fed tokens (the loop feeds its last token too)
    assert torch.equal(ref.decode.sequences, cap.decode.sequences)
    assert torch.equal(ref.decode.step_logits, cap.decode.step_logits)
    assert all(r is None for r in _routings(tiny_pipe))


def test_no_residue_after_error(tiny_pipe, ave_raw):
    media = encode(tiny_pipe.model, ave_raw)
    ref = _decode(tiny_pipe, ave_raw, media, 3)
    with pytest.raises(RuntimeError, match="boom"):
        with routing(tiny_pipe.model.llm, Variant.only(1, 3).control()):
            with capture_routing(tiny_pipe.model):
                _decode(tiny_pipe, ave_raw, media, 2)
                raise RuntimeError("boom")
    assert all(r is None for r in _routings(tiny_pipe))
    after = _decode(tiny_pipe, ave_raw, media, 3)
    assert torch.equal(ref.decode.step_logits, after.decode.step_logits)


def test_trace_layout(tiny_pipe, ave_raw):
    out = generate(tiny_pipe, ave_raw, capture=True, max_new_tokens=6)
    tr = out.trace
    cfg = tiny_pipe.model.config
    n_prompt = int(np.isin(tr.kinds, ["text", "video", "audio", "image"]).sum())
    n_gen = len(out.result.answer_ids)
    assert tr.num_tokens == n_prompt + (n_gen if n_gen == 6 else n_gen + 1)  # an ending EOS is never fed
    assert tr.weights.shape == (tr.num_tokens, cfg.llm.num_hidden_layers, 7, 3)
    assert tr.projections[0] == "q_proj" and tr.layers == list(range(cfg.llm.num_hidden_layers))
    assert (tr.kinds == "video").sum() == 10 * cfg.vl_qformer.num_query_tokens
    assert (tr.kinds == "audio").sum() == 10 * cfg.al_qformer.num_query_tokens
    assert tr.units[tr.kinds == "video"].max() == 9 and tr.units[tr.kinds == "text"].max() == -1
    np.testing.assert_allclose(tr.weights.sum(-1), 1.0, atol=1e-5)
    assert (tr.norms >= 0).all() and np.isfinite(tr.norms).all()
    assert tr.labels[int(np.argmax(tr.kinds == "video"))] == "video f0"
    assert tr.mean_by_unit("audio").shape == (10, cfg.llm.num_hidden_layers, 7, 3)
    assert set(tr.mean_by_kind()) == {"text", "video", "audio", "answer"} or "seg" in tr.kinds
    assert len(tr.to_json()["weights"]) == tr.num_tokens
    assert len(seg_token_ids(cfg)) == cfg.seg.num_seg_tokens + 2


def test_decode_steps_join_like_one_forward(tiny_pipe, ave_raw):
    """Prefill + cached steps give the same per-token routing as one teacher-forced pass."""
    out = generate(tiny_pipe, ave_raw, capture=True, max_new_tokens=5)
    model = tiny_pipe.model
    media = encode(model, ave_raw)
    # every fed generated token: answer text and any <mask_*> seg tag the (random) model emits
    fed = out.trace.token_ids[np.isin(out.trace.kinds, ["answer", "seg"])].tolist()
    batch = model.prepare([make_sample(ave_raw, media, fed)])
    with torch.no_grad(), capture_routing(model) as rec:
        model.llm(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )
    full = rec.trace(batch)
    np.testing.assert_allclose(full.weights, out.trace.weights, atol=1e-4)
    np.testing.assert_allclose(full.norms, out.trace.norms, atol=1e-3, rtol=1e-3)


def test_capture_inside_ablation_sees_forced_heads(tiny_pipe, ave_raw):
    out = generate(tiny_pipe, ave_raw, variant=Variant.only(2, 3), capture=True, max_new_tokens=3)
    norms = out.trace.norms
    assert (norms[..., :2] == 0).all() and (norms[..., 2] > 0).any()
    np.testing.assert_allclose(out.trace.weights.sum(-1), 1.0, atol=1e-5)  # router readout, not the override
