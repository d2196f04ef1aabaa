"""Per-component comparisons against a reference-fixture folder (used by ``verify.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.crab import CrabModel, CrabSample
from ..model.ilora import ILoraLinear, RoutingControl
from ..model.ilora_inject import reference_to_ours as ilora_reference_to_ours
from ..model.ilora_inject import routing
from .fixture import load_io
from .io import read_state_dict
from .verify import Check, compare


def check_ilora(folder: Path) -> list[Check]:
    """Stand-alone I-LoRA layer (``a_ilora``): output and router weights."""
    inp, out = load_io(folder, "a_ilora")
    w = read_state_dict(Path(folder) / "a_ilora" / "weights.safetensors", float32=True)
    r, heads = w["lora_A.weight"].shape[0], w["lora_route.weight"].shape[0]
    base = nn.Linear(w["weight"].shape[1], w["weight"].shape[0], bias="bias" in w)
    base.load_state_dict({k: w[k] for k in ("weight", "bias") if k in w})
    layer = ILoraLinear.wrap(base, r=r, alpha=2.0 * r, dropout=0.05, num_heads=heads).eval()
    lora, _ = ilora_reference_to_ours({k: v for k, v in w.items() if k.startswith("lora_")})
    missing = layer.load_state_dict(lora, strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"unexpected I-LoRA keys {missing.unexpected_keys}")
    captured: dict[str, torch.Tensor] = {}
    layer.routing = RoutingControl(capture=lambda name, g, norms: captured.__setitem__("g", g))
    y = layer(inp["x"])
    layer.routing = None
    return [
        compare("a_ilora", "y", y, out["y"]),
        compare("a_ilora", "route_weight", captured["g"], out["route_weight"]),
        compare(
            "a_ilora", "y_without_return_route_weight", layer(inp["x"]), out["y_without_return_route_weight"]
        ),
    ]


def check_vl_projector(folder: Path, model: CrabModel) -> list[Check]:
    inp, out = load_io(folder, "b_vl_projector")
    p = model.visual_encoder.patches_per_frame
    y = model.vl_projector(inp["visual_feature"], tokens_per_frame=p)
    return [compare("b_vl_projector", "visual_embeds", y, out["visual_embeds"])]


def check_al_projector(folder: Path, model: CrabModel) -> list[Check]:
    inp, out = load_io(folder, "c_al_projector")
    return [
        compare(
            "c_al_projector",
            "audio_embeds_from_3d",
            model.al_projector(inp["audio_feature_3d"]),
            out["audio_embeds_from_3d"],
        ),
        compare(
            "c_al_projector",
            "audio_embeds_from_4d",
            model.al_projector(inp["audio_feature_4d"]),
            out["audio_embeds_from_4d"],
        ),
    ]


def check_fbank(folder: Path) -> list[Check]:
    from ..media.fbank import crab_fbank

    inp, out = load_io(folder, "d_fbank")
    return [compare("d_fbank", "fbank_normalized", crab_fbank(inp["waveform"]), out["fbank_normalized"])]


def check_beats(folder: Path, model: CrabModel) -> list[Check]:
    inp, out = load_io(folder, "d_beats")
    return [
        compare("d_beats", "features_from_3d", model.audio_encoder(inp["fbank_3d"]), out["features_from_3d"]),
        compare("d_beats", "features_from_4d", model.audio_encoder(inp["fbank_4d"]), out["features_from_4d"]),
    ]


def check_clip(folder: Path, model: CrabModel) -> list[Check]:
    inp, out = load_io(folder, "e_clip")
    feats = model.visual_encoder(inp["video"])
    names = [f"hidden_state_{i}" for i in model.visual_encoder.select_layers]
    return [compare("e_clip", n, f, out[n]) for n, f in zip(names, feats)]


def check_image(folder: Path, raw: dict) -> list[Check]:
    from ..media.image import clip_preprocess, resize_rgb

    inp, out = load_io(folder, "e_image_preprocess")
    size = int(raw["image_size"])
    img = inp["image_uint8"].numpy().astype(np.uint8)
    resized = resize_rgb(img, size)
    pixels = clip_preprocess(resized[None], size)
    return [
        compare(
            "e_image_preprocess", "resized_uint8", torch.from_numpy(np.asarray(resized)), out["resized_uint8"]
        ),
        compare("e_image_preprocess", "pixel_values", pixels, out["pixel_values"]),
    ]


def check_seg(folder: Path, model: CrabModel, meta: dict) -> list[Check]:
    inp, out = load_io(folder, "f_seg")
    checks = []
    for sc in meta.get("scenarios", []):
        n, tasks = sc["name"], sc["tasks"]
        feats = [inp[f"{n}.multi_scale_feature_{i}"] for i in range(2)]
        emb = inp[f"{n}.pred_embeddings"]
        res = model.seg_module(emb, feats, tasks, inp[f"{n}.gt_mask"])
        checks.append(compare("f_seg", f"{n}.mask_loss", res.mask_loss, out[f"{n}.mask_loss"]))
        if f"{n}.pred_masks.0" not in out:
            continue
        for b in range(len(tasks)):
            checks.append(
                compare("f_seg", f"{n}.pred_masks.{b}", res.pred_masks[b], out[f"{n}.pred_masks.{b}"])
            )
            for lvl in range(2):
                key = f"{n}.level_logits.{b}.{lvl}"
                if key in out and res.level_logits is not None:
                    checks.append(compare("f_seg", key, res.level_logits[b][lvl], out[key]))
                key = f"{n}.query_generator_out.{b}.{lvl}"
                if key in out and res.query_generator_out is not None:
                    checks.append(compare("f_seg", key, res.query_generator_out[b][lvl], out[key]))
        key = f"{n}.text_hidden_fcs_out"
        if key in out and res.text_hidden_fcs_out is not None:
            checks.append(compare("f_seg", key, res.text_hidden_fcs_out, out[key]))
    return checks


def _samples(
    model: CrabModel,
    inp: dict,
    names: list[str],
    tasks: list[str],
    with_labels: bool = True,
    need_seg: bool = False,
) -> list[CrabSample]:
    out = []
    for name, task in zip(names, tasks):
        media = model.encode_media(
            video=inp.get(f"{name}.<video>"),
            audio=inp.get(f"{name}.<audio>"),
            image=inp.get(f"{name}.<image>"),
            need_seg=need_seg,
        )
        out.append(
            CrabSample(
                input_ids=inp[f"{name}.input_ids"],
                media=media,
                task=task,
                labels=inp[f"{name}.labels"] if with_labels else None,
                gt_mask=inp.get(f"{name}.<mask>"),
            )
        )
    return out


def _prepare_checks(component: str, batch, out: dict) -> list[Check]:
    valid = batch.attention_mask.bool().cpu()
    return [
        compare(
            component,
            "prepare.inputs_embeds",
            batch.inputs_embeds,
            out["prepare.inputs_embeds"],
            valid.unsqueeze(-1),
        ),
        compare(component, "prepare.attention_mask", batch.attention_mask, out["prepare.attention_mask"]),
        compare(component, "prepare.position_ids", batch.position_ids, out["prepare.position_ids"]),
        compare(component, "prepare.labels", batch.labels, out["prepare.labels"]),
    ]


def check_end2end(folder: Path, model: CrabModel, meta: dict) -> list[Check]:
    """Splice, LLM forward (logits, loss), router weights, greedy generation."""
    inp, out = load_io(folder, "g_end2end")
    spec = meta["forward"]["samples"]
    samples = _samples(model, inp, [s["name"] for s in spec], [s["task"] for s in spec])
    captured: dict[str, torch.Tensor] = {}
    control = RoutingControl(capture=lambda name, g, norms: captured.__setitem__(name, g))
    with routing(model.llm, control):
        res = model(samples)
    batch = res.batch
    valid = batch.attention_mask.bool().cpu()
    checks = _prepare_checks("g_end2end", batch, out)
    checks.append(
        compare("g_end2end", "forward.logits", res.logits, out["forward.logits"], valid.unsqueeze(-1))
    )
    checks.append(compare("g_end2end", "forward.loss", res.lm_loss, out["forward.loss"]))
    for key in sorted(k for k in out if k.startswith("route_weight.")):
        name = "layers." + key[len("route_weight.") :]
        checks.append(compare("g_end2end", key, captured[name], out[key], valid.unsqueeze(-1)))
    gen_spec = meta.get("generate", {})
    gsample = _samples(model, inp, ["generate"], [gen_spec.get("task", "avqa")], with_labels=False)
    ref_seq = out["generate.sequences"]
    n_new = int(gen_spec.get("max_new_tokens", ref_seq.shape[1] - 1))
    gen = model.generate(gsample, max_new_tokens=n_new, return_logits=True)
    ours_seq = gen.decode.sequences.cpu()
    bos = model.config.llm.bos_token_id
    if ref_seq.shape[1] == ours_seq.shape[1] + 1 and int(ref_seq[0, 0]) == bos:
        # transformers 4.37 prefixes BOS when generating from inputs_embeds only; we return new tokens.
        ours_seq = torch.cat([torch.full((1, 1), bos), ours_seq], 1)
    checks.append(compare("g_end2end", "generate.sequences", ours_seq, ref_seq))
    checks.append(
        compare("g_end2end", "generate.step_logits", gen.decode.step_logits[0], out["generate.step_logits"])
    )
    return checks


def check_avs_forward(folder: Path, model: CrabModel, meta: dict) -> list[Check]:
    """The AVS training forward: seg-token selection, LM loss + mask loss."""
    inp, out = load_io(folder, "h_avs_forward")
    spec = meta["avs_forward"]["samples"]
    samples = _samples(model, inp, [s["name"] for s in spec], [s["task"] for s in spec], need_seg=True)
    res = model(samples)
    batch = res.batch
    valid = batch.attention_mask.bool().cpu()
    checks = _prepare_checks("h_avs_forward", batch, out)
    sel = batch.seg_token_mask(model.config.mask_token_ids)
    checks.append(compare("h_avs_forward", "prepare.mask_token_mask", sel, out["prepare.mask_token_mask"]))
    for i in range(2):
        ours = torch.stack([s.media.seg_features[i] for s in samples])
        checks.append(
            compare(
                "h_avs_forward",
                f"prepare.multi_scale_image_features.{i}",
                ours,
                out[f"prepare.multi_scale_image_features.{i}"],
            )
        )
    checks += [
        compare("h_avs_forward", "forward.logits", res.logits, out["forward.logits"], valid.unsqueeze(-1)),
        compare(
            "h_avs_forward", "forward.pred_embeddings", res.seg_embeddings, out["forward.pred_embeddings"]
        ),
        compare(
            "h_avs_forward", "forward.lm_loss_recomputed", res.lm_loss, out["forward.lm_loss_recomputed"]
        ),
        compare("h_avs_forward", "forward.mask_loss", res.mask_loss, out["forward.mask_loss"]),
        compare("h_avs_forward", "forward.total_loss", res.loss, out["forward.total_loss"]),
    ]
    return checks
