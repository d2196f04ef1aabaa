"""Shared CLI options: choosing and loading a model for the pipeline."""

from __future__ import annotations

import argparse

import torch


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="crab-tiny",
                        help="crab-tiny (shipped), crab-7b (official weights, see --llm/--clip/--beats/--crab) "
                             "or a model folder in our format")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--llm", help="crab-7b: LLaMA-2-7B-chat folder or Hub id")
    parser.add_argument("--clip", help="crab-7b: CLIP ViT-L/14 folder or Hub id")
    parser.add_argument("--beats", help="crab-7b: BEATs iter3+ .pt file")
    parser.add_argument("--crab", nargs="*", default=[], help="crab-7b: released Crab files in load order")


def load_pipeline(args: argparse.Namespace):
    """Build the :class:`CrabPipeline` the options describe."""
    from .pipeline import CrabPipeline

    if args.model != "crab-7b":
        return CrabPipeline.load(args.model, device=args.device)
    from .checkpoint.hub import DEFAULT_CLIP, DEFAULT_LLM, OfficialSources, load_crab_7b, resolve
    from .tokenizer import CrabTokenizer

    src = OfficialSources(llm=args.llm or DEFAULT_LLM, clip=args.clip or DEFAULT_CLIP, beats=args.beats,
                          crab=tuple(args.crab))
    dtype = torch.bfloat16 if str(args.device).startswith("cuda") else torch.float32
    model, _ = load_crab_7b(src, device=args.device, dtype=dtype)
    tok = CrabTokenizer.from_dir(resolve(src.llm), model.config)
    return CrabPipeline(model, tok, name="crab-7b")
