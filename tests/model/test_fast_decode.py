"""Fused I-LoRA and static-cache / compiled decoding equal the eager paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crab_core.errors import ConfigError
from crab_core.model.builder import build_model
from crab_core.model.crab import CrabSample
from crab_core.model.fast_decode import FastDecodeConfig, disable_fast_decode, enable_fast_decode
from crab_core.model.ilora import ILoraLinear, RoutingControl
from crab_core.model.ilora_fused import FusedILora, disable_fused_ilora, enable_fused_ilora


def _layer(alpha: float, seed: int = 0) -> ILoraLinear:
    torch.manual_seed(seed)
    layer = ILoraLinear.wrap(nn.Linear(32, 48), r=4, alpha=alpha, dropout=0.1, num_heads=3).eval()
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.1)
    return layer


def _eager_and_fused(layer: ILoraLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        layer.fast_path = None
        eager = layer(x)
        layer.fast_path = FusedILora()
        fused = layer(x)
    return eager, fused


@pytest.mark.parametrize("alpha", [8.0, 6.0])  # scaling 2 (folded into A, exact) and 1.5 (not folded)
@pytest.mark.parametrize("shape", [(5, 32), (2, 7, 32), (1, 1, 32)])
def test_fused_layer_equals_eager_fp32(alpha, shape):
    layer = _layer(alpha)
    x = torch.randn(*shape)
    eager, fused = _eager_and_fused(layer, x)
    assert fused.shape == eager.shape == (*shape[:-1], 48)
    torch.testing.assert_close(fused, eager, rtol=1e-6, atol=1e-6)
    assert not torch.equal(eager, layer.base_layer(x))  # the adapter contributes


def test_fused_layer_refreshes_after_weight_change():
    layer = _layer(8.0)
    x = torch.randn(3, 32)
    _eager_and_fused(layer, x)
    with torch.no_grad():
        layer.lora_A["default"].weight.mul_(-3.0)
        layer.lora_route["default"].weight.add_(0.5)
    eager, fused = _eager_and_fused(layer, x)
    torch.testing.assert_close(fused, eager, rtol=1e-6, atol=1e-6)


def test_fused_layer_defers_to_eager_for_routing_dropout_and_training():
    layer = _layer(8.0)
    x = torch.randn(4, 32)
    fused = FusedILora()
    assert not fused.applicable(layer, "default", x)  # autograd would not reach the cached [A; R]
    with torch.no_grad():
        assert fused.applicable(layer, "default", x)
        layer.routing = RoutingControl(head_mask=torch.tensor([1.0, 0.0, 1.0]))
        assert not fused.applicable(layer, "default", x)
    eager, got = _eager_and_fused(layer, x)
    torch.testing.assert_close(got, eager, rtol=0, atol=0)  # the head mask is honoured
    layer.routing = None
    layer.train()
    with torch.no_grad():
        assert not fused.applicable(layer, "default", x)  # dropout active
    layer.eval()
    layer.fast_path = fused
    layer(x).sum().backward()  # autograd: eager path, gradients reach A and the router
    assert layer.lora_A["default"].weight.grad is not None
    assert layer.lora_route["default"].weight.grad is not None


def test_enable_disable_fused_on_a_model():
    llm = build_model("crab-tiny", seed=0).llm
    n = enable_fused_ilora(llm)
    layers = [m for m in llm.modules() if isinstance(m, ILoraLinear)]
    assert n == len(layers) == 4 * 7
    assert all(isinstance(m.fast_path, FusedILora) for m in layers)
    disable_fused_ilora(llm)
    assert all(m.fast_path is None for m in layers)


def test_config_is_validated():
    with pytest.raises(ConfigError):
        FastDecodeConfig(compile_mode="fastest")
    with pytest.raises(ConfigError):
        FastDecodeConfig(bucket=0)
    with pytest.raises(ConfigError):
        FastDecodeConfig(compile=True, fused_ilora=False)


@pytest.fixture(scope="module")
def model():
    m = build_model("crab-tiny", seed=3).eval()
    with torch.no_grad():  # non-zero B heads so that I-LoRA takes part
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return m


def _sample(model, n_text: int, n_frames: int, seed: int) -> CrabSample:
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
    with torch.no_grad():
        media = model.encode_media(
            video=torch.randn(n_frames, 3, s, s, generator=g),
            audio=torch.randn(n_frames, 98, 128, generator=g),
        )
    return CrabSample(input_ids=input_ids, media=media, task="ave")


def _generate(model, samples, config: FastDecodeConfig | None, **kw):
    if config is None:
        disable_fast_decode(model)
    else:
        enable_fast_decode(model, config)
    try:
        return model.generate(samples, return_logits=True, **kw).decode
    finally:
        disable_fast_decode(model)


def _assert_same(got, ref):
    assert torch.equal(got.lengths, ref.lengths)
    assert torch.equal(got.sequences, ref.sequences)
    torch.testing.assert_close(got.step_logits, ref.step_logits, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_static_cache_decode_is_token_identical(model, fused):
    """A left-padded batch of three: same tokens, lengths and logits as the eager dynamic-cache loop."""
    samples = [_sample(model, 7, 2, 0), _sample(model, 21, 3, 1), _sample(model, 12, 1, 2)]
    ref = _generate(model, samples, None, max_new_tokens=20)
    assert ref.sequences.shape == (3, 20)
    got = _generate(model, samples, FastDecodeConfig(fused_ilora=fused, bucket=16), max_new_tokens=20)
    _assert_same(got, ref)
    assert all(m.fast_path is None for m in model.modules() if isinstance(m, ILoraLinear))


def test_static_cache_decode_stops_like_eager(model):
    """EOS handling: per-sample lengths, padding after EOS, and the early stop trimmed identically."""
    samples = [_sample(model, 9, 2, 4), _sample(model, 15, 2, 5)]
    free = _generate(model, samples, None, max_new_tokens=12)
    eos = model.config.llm.eos_token_id
    object.__setattr__(model.config.llm, "eos_token_id", int(free.sequences[0, 2]))
    try:
        ref = _generate(model, samples, None, max_new_tokens=30)
        got = _generate(model, samples, FastDecodeConfig(sync_every=4), max_new_tokens=30)
    finally:
        object.__setattr__(model.config.llm, "eos_token_id", eos)
    assert int(ref.lengths[0]) <= 3
    _assert_same(got, ref)


def test_static_cache_seg_hidden_states(model):
    """The per-step hidden states (used for seg tokens) match the eager loop."""
    embeds = model.prepare([_sample(model, 10, 2, 6)])
    from crab_core.model.fast_decode import StaticDecoder
    from crab_core.model.llm import decode

    args = (embeds.inputs_embeds, embeds.attention_mask, embeds.position_ids, 8, -1, 2)
    ref = decode(model.llm, *args, return_hidden=True)
    dec = StaticDecoder(model.llm, FastDecodeConfig())
    try:
        got = dec.decode(model.llm, *args, return_hidden=True)
    finally:
        dec.close()
    assert torch.equal(got.sequences, ref.sequences)
    torch.testing.assert_close(got.step_hidden, ref.step_hidden, rtol=1e-4, atol=2e-5)


def test_trained_crab_tiny_greedy_is_token_identical():
    """The shipped crab-tiny weights: greedy answers identical with the fast path."""
    from crab_core.pipeline import CrabPipeline

    pipe = CrabPipeline.load("crab-tiny")
    if not pipe.trained:
        pytest.skip("crab-tiny weights not present")
    samples = [_sample(pipe.model, 12, 10, 11), _sample(pipe.model, 5, 10, 12)]
    ref = _generate(pipe.model, samples, None, max_new_tokens=24)
    got = _generate(pipe.model, samples, FastDecodeConfig(), max_new_tokens=24)
    _assert_same(got, ref)


@pytest.mark.slow
def test_compiled_step_is_token_identical(model):
    """The torch.compile'd decode step (dynamo graph capture; aot_eager keeps it fast on CPU)."""
    samples = [_sample(model, 7, 2, 0), _sample(model, 13, 2, 3)]
    ref = _generate(model, samples, None, max_new_tokens=10)
    config = FastDecodeConfig(compile=True, compile_mode="default", backend="aot_eager")
    got = _generate(model, samples, config, max_new_tokens=10)
    _assert_same(got, ref)


def test_decode_step_has_no_graph_break(model):
    """The one-token step traces as one graph (what CUDA graphs need to replay a whole token).

    Without the per-step hidden state (every task but segmentation). With it, transformers'
    ``output_hidden_states`` capture hooks split the step into 3 graphs (a follow-up for the GPU work).
    """
    from transformers import StaticCache

    from crab_core.model.fast_decode import StaticDecoder

    dec = StaticDecoder(model.llm, FastDecodeConfig())
    cache = StaticCache(config=model.llm.config, max_cache_len=32)
    mask = torch.ones(1, 32, dtype=torch.long)
    try:
        with torch.no_grad():
            model.llm(
                inputs_embeds=torch.randn(1, 6, model.config.llm.hidden_size),
                attention_mask=mask,
                position_ids=torch.arange(6)[None],
                cache=cache,
                use_cache=True,
            )
            explained = torch._dynamo.explain(dec._step_eager)(
                torch.tensor([5]), mask, torch.tensor([[6]]), cache, False
            )
    finally:
        dec.close()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow
def test_compiled_step_honours_routing_controls(model):
    """A head mask in force: the compiled decoder runs its step eagerly and matches the eager loop."""
    from crab_core.model.ilora_inject import routing

    samples = [_sample(model, 8, 2, 9)]
    config = FastDecodeConfig(compile=True, compile_mode="default", backend="aot_eager")
    with routing(model.llm, RoutingControl(head_mask=torch.tensor([0.0, 1.0, 0.0]))):
        ref = _generate(model, samples, None, max_new_tokens=8)
        got = _generate(model, samples, config, max_new_tokens=8)
    free = _generate(model, samples, None, max_new_tokens=8)
    _assert_same(got, ref)
    assert not torch.allclose(free.step_logits, ref.step_logits)  # the mask changed the logits


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path):
    """benchmarks/gpu_crab7b.py --smoke: every path, the HF reference and the token check, on CPU."""
    from benchmarks.gpu_crab7b import main

    assert main(["--smoke", "--new-tokens", "4", "--reps", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "gpu_crab7b_smoke.md").read_text()
    for path in ("eager", "static", "compiled"):
        for lora in ("on", "off"):
            assert f"| {path} | {lora} |" in md
    assert "| HF LlamaForCausalLM.generate (no LoRA) |" in md
    assert md.count("| identical |") == 6  # float32: every path's greedy tokens equal the eager ones


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_gpu_benchmark_without_cuda_measures_nothing(tmp_path, capsys):
    from benchmarks.gpu_crab7b import main

    assert main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_is_token_identical_bf16():
    """mode='reduce-overhead' (CUDA graphs) in bf16: same greedy tokens as the eager loop."""
    m = build_model("crab-tiny", seed=3, device="cuda", dtype=torch.bfloat16).eval()
    samples = [_sample(m, 9, 2, 0)]
    ref = _generate(m, samples, None, max_new_tokens=16)
    got = _generate(m, samples, FastDecodeConfig(compile=True), max_new_tokens=16)
    assert torch.equal(got.sequences, ref.sequences)
