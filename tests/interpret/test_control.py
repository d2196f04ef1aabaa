"""crab_core.interpret.control: the scoped head control the app and reports use."""

from __future__ import annotations

import pytest

from crab_core.errors import TaskError
from crab_core.interpret.ablation import Variant, answer_nll, generate
from crab_core.interpret.control import HeadControl, head_control, layer_index, num_layers_with_heads
from crab_core.model.ilora_inject import iter_ilora_layers


def test_routing_control_values():
    assert HeadControl("ablate", (1,)).routing_control(3).head_mask.tolist() == [1, 0, 1]
    assert HeadControl("force", (0, 2)).routing_control(3).forced_weights.tolist() == [0.5, 0, 0.5]
    assert HeadControl.only(2).routing_control(3).forced_weights.tolist() == [0, 0, 1]
    assert HeadControl.without(0).name == "without h0" and HeadControl.only(1).name == "only h1"
    assert "layers 1" in HeadControl("ablate", (0,), (1,)).describe()
    for bad in (
        HeadControl("ablate", (5,)),
        HeadControl("ablate", ()),
        HeadControl("blend", (0,)),
        HeadControl("ablate", (0, 1, 2), renormalize=True),
    ):
        with pytest.raises(TaskError):
            bad.routing_control(3)
    assert layer_index("layers.12.self_attn.q_proj") == 12 and layer_index("lm_head") is None


def test_head_control_scopes_layers_and_restores(tiny_pipe):
    model = tiny_pipe.model
    layers = dict(iter_ilora_layers(model.llm))
    assert num_layers_with_heads(model) == list(range(model.config.llm.num_hidden_layers))
    with head_control(model, HeadControl("ablate", (0,), layers=(1,))) as changed:
        assert changed and all(layer_index(n) == 1 for n in changed)
        for name, layer in layers.items():
            if layer_index(name) == 1:
                assert layer.routing.head_mask.tolist()[0] == 0.0
            else:
                assert layer.routing is None
    assert all(layer.routing is None for layer in layers.values())
    with pytest.raises(RuntimeError), head_control(model, HeadControl.only(0)):
        raise RuntimeError("boom")
    assert all(layer.routing is None for layer in layers.values())
    with (
        pytest.raises(TaskError, match="no I-LoRA layer"),
        head_control(model, HeadControl("ablate", (0,), (9,))),
    ):
        pass


def test_head_control_matches_the_ablation_variant(tiny_pipe, ave_raw):
    """Routing through the context scores an answer exactly as ablation's variant does, and
    differently from the normal routing."""
    from crab_core.interpret.inputs import encode
    from crab_core.model.ilora_inject import routing

    model = tiny_pipe.model
    media = encode(model, ave_raw)
    ids = generate(tiny_pipe, ave_raw, media, None, max_new_tokens=6).result.answer_ids
    normal = answer_nll(model, ave_raw, media, ids)
    with routing(model.llm, Variant.only(1, 3).control()):
        ref = answer_nll(model, ave_raw, media, ids)
    with head_control(model, HeadControl.only(1)):
        got = answer_nll(model, ave_raw, media, ids)
    assert got == pytest.approx(ref, abs=1e-6)
    assert abs(got - normal) > 1e-4
    assert answer_nll(model, ave_raw, media, ids) == pytest.approx(normal, abs=1e-6)  # restored


def test_head_control_is_scoped_to_its_thread(tiny_pipe):
    """Two callers (threads) sharing one model each see only their own intervention: thread A's
    ``only h0`` is invisible to thread B, which runs with the normal routing and then its own
    ``without h1``, while A keeps ``only h0`` throughout."""
    import threading

    import torch

    model = tiny_pipe.model
    layers = dict(iter_ilora_layers(model.llm))
    layer = next(iter(layers.values()))
    x = torch.randn(2, 3, layer.base_layer.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        normal = layer(x)
        with head_control(model, HeadControl.only(0)):
            only0 = layer(x)
        with head_control(model, HeadControl.without(1)):
            without1 = layer(x)
    gap = min((normal - only0).abs().max(), (normal - without1).abs().max(), (only0 - without1).abs().max())
    assert gap > 1e-3, gap  # the three routings give clearly different outputs
    tol = {"rtol": 0, "atol": 1e-5}  # other threads may run other kernels: float noise only
    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()
    seen, errors = {}, []

    def thread_a():
        try:
            with head_control(model, HeadControl.only(0)), torch.no_grad():
                a_in.set()
                assert b_in.wait(60)  # B is inside its own control now
                seen["a"] = [layer.routing.forced_weights.tolist() for layer in layers.values()]
                seen["a_out"] = layer(x)
                a_done.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            a_done.set()

    def thread_b():
        try:
            assert a_in.wait(60)  # A's control is active
            with torch.no_grad():
                seen["b_before"] = [layer.routing for layer in layers.values()]
                seen["b_out"] = layer(x)
                with head_control(model, HeadControl.without(1)):
                    b_in.set()
                    assert a_done.wait(60)
                    seen["b"] = [layer.routing.head_mask.tolist() for layer in layers.values()]
                    seen["b_inner_out"] = layer(x)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            b_in.set()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(r is None for r in seen["b_before"])  # B does not see A's intervention
    torch.testing.assert_close(seen["b_out"], normal, **tol)
    assert all(w == [1.0, 0.0, 0.0] for w in seen["a"])  # A does not see B's
    torch.testing.assert_close(seen["a_out"], only0, **tol)
    assert all(m == [1.0, 0.0, 1.0] for m in seen["b"])
    torch.testing.assert_close(seen["b_inner_out"], without1, **tol)
    assert all(layer.routing is None for layer in layers.values())  # nothing left behind
