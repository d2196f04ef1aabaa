"""Run by ``accelerate launch`` in tests: a few steps of a micro recipe, then each rank writes a
digest of its weights (``rank<i>.txt``) so the test can check every rank holds the same model."""

import hashlib
import sys

import torch

from crab_core.training.trainer import Trainer, default_accelerator
from tests.training.conftest_recipes import micro_recipe


def main() -> None:
    out, cache = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    trainer = Trainer(
        micro_recipe(), out, accelerator=default_accelerator(cpu=True), progress=False, cache_dir=cache
    )
    trainer.setup()
    assert trainer.train()
    h = hashlib.sha256()
    for k, v in sorted(trainer.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    losses = ",".join(f"{r['loss']:.6f}" for r in trainer.history)
    with open(f"{out}/rank{trainer.acc.process_index}.txt", "w") as fh:
        fh.write(f"{trainer.acc.num_processes}\n{h.hexdigest()}\n{losses}\n")


if __name__ == "__main__":
    main()
