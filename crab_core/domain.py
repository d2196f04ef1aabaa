"""Which inputs a model knows: SynthAV detection and the out-of-domain notice (docs/domain.md).

crab-tiny is trained only on SynthAV scenes; on a real clip it answers fluently and wrongly. Every
result of a SynthAV-only model on an input that is not a SynthAV clip therefore carries
:data:`OUT_OF_DOMAIN`.

A file counts as SynthAV when

* it is byte-identical to one of the bundled examples (``assets/examples``, rendered by
  ``scripts/make_examples.py``), or
* it carries the marker that ``python -m crab_core synth`` writes into every file
  (:data:`crab_core.synthav.writer.MARKER`: the mp4 ``comment`` tag, the PNG ``Software`` text, a wav
  ``LIST/INFO`` chunk), found in the first or last :data:`SCAN_BYTES` of the file.

Re-encoding, cropping or screenshotting a SynthAV clip drops the marker, so such a copy gets the notice
too: a false notice costs a sentence, a missing one a wrong answer taken for a right one. The marker is
not a security feature (anyone can write it); it only keeps honest inputs honest.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
MARKER_BYTES = b"crab-synthav:"
SCAN_BYTES = 256 * 1024
_MEDIA_SUFFIXES = {".mp4", ".wav", ".png", ".jpg", ".jpeg", ".mp3", ".webm", ".mkv", ".mov"}

OUT_OF_DOMAIN = (
    "out of domain: {model} is trained only on SynthAV scenes (coloured shapes, synthetic sounds); "
    "{which} not a SynthAV clip, so the answer is probably wrong however fluent it reads (docs/domain.md)"
)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def bundled_example_digests() -> frozenset[str]:
    """SHA-256 of every media file in ``assets/examples`` (hashed once per process, ~0.5 MB)."""
    if not EXAMPLES_DIR.is_dir():
        return frozenset()
    return frozenset(
        _digest(p)
        for p in sorted(EXAMPLES_DIR.iterdir())
        if p.is_file() and p.suffix.lower() in _MEDIA_SUFFIXES
    )


@lru_cache(maxsize=256)
def _synthav_stamp(path: str, mtime_ns: int, size: int) -> bool:
    p = Path(path)
    with p.open("rb") as f:
        head = f.read(SCAN_BYTES)
        tail = b""
        if size > SCAN_BYTES:
            f.seek(max(SCAN_BYTES, size - SCAN_BYTES))
            tail = f.read(SCAN_BYTES)
    if MARKER_BYTES in head or MARKER_BYTES in tail:
        return True
    return size <= 16 * 1024 * 1024 and _digest(p) in bundled_example_digests()


def is_synthav_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a SynthAV file (a bundled example, or marked by ``synth``).

    Reads at most ``2 * SCAN_BYTES`` (plus a hash of files up to 16 MB); results are cached per
    path, modification time and size. An unreadable file is not SynthAV.
    """
    try:
        st = os.stat(path)
        return _synthav_stamp(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return False


def synthav_only(model_name: str, card: dict | None = None) -> bool:
    """Whether a model knows only SynthAV: crab-tiny (config name), or a training card whose data is
    SynthAV alone (``recipe.data.synth_per_task`` > 0 and no ``manifests``)."""
    if model_name == "crab-tiny":
        return True
    data = ((card or {}).get("recipe") or {}).get("data") or {}
    return isinstance(data, dict) and bool(data.get("synth_per_task")) and not data.get("manifests")


def out_of_domain_notice(model_name: str, card: dict | None, files: dict[str, str | None]) -> str | None:
    """The out-of-domain notice for a run of model ``model_name`` on ``files`` (kind -> path), or None.

    None when the model is not SynthAV-only, or when every given file is SynthAV.
    """
    if not synthav_only(model_name, card):
        return None
    foreign = [kind for kind, path in files.items() if path is not None and not is_synthav_file(path)]
    if not foreign:
        return None
    which = f"the {' and '.join(foreign)} {'is' if len(foreign) == 1 else 'are'}"
    return OUT_OF_DOMAIN.format(model=model_name, which=which)
