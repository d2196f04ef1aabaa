"""The one inference path (CLI, evaluation and app): media + task -> :class:`TaskResult`.

Encoded clip features are cached (keyed by the files, their modification times and how the
task samples them), so more questions on the same clip skip the encoders.

Memory is bounded for any input: every stream (video, a video's audio track, a separate audio file)
must last at most :attr:`CrabPipeline.max_duration_s` (default 60 s, ``--max-duration``), checked from
the file's metadata before decoding, and only the task's frames and audio windows are decoded (see
:func:`crab_core.media.load_clip`).
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections import OrderedDict
from pathlib import Path

import torch

from .errors import CrabError, TaskError
from .media.limits import DEFAULT_MAX_DURATION_S, validate_limit
from .model.crab import CrabModel, CrabSample, EncodedMedia
from .pipeline_types import PreparedInput, TaskResult, internal_errors, resolve_inputs
from .tasks import get_task
from .tasks.parsers import parse
from .tasks.prompts import build_prompt
from .tokenizer import CrabTokenizer

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY_DIR = ASSETS / "crab-tiny"
__all__ = ["CrabPipeline", "PreparedInput", "TaskResult", "internal_errors", "resolve_inputs", "TINY_DIR"]


class CrabPipeline:
    """Run any Crab task on media files with one model.

    Example:
        >>> pipe = CrabPipeline.load("crab-tiny")  # doctest: +SKIP
        >>> res = pipe.run("ave", video="clip.mp4")  # doctest: +SKIP
        >>> res.parsed.event, res.parsed.range  # doctest: +SKIP
    """

    def __init__(
        self,
        model: CrabModel,
        tokenizer: CrabTokenizer,
        name: str = "crab",
        trained: bool = True,
        card: dict | None = None,
        cache_size: int = 8,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
    ) -> None:
        self.model = model.eval()
        #: longest accepted stream in seconds (video, audio track, separate audio);
        #: per call: ``max_duration_s=``
        self.max_duration_s = validate_limit(max_duration_s)
        self.tokenizer = tokenizer
        self.name = name
        self.trained = trained
        self.card = card or {}
        self._cache: OrderedDict[tuple, tuple[EncodedMedia, list[str]]] = OrderedDict()
        self._cache_size = cache_size
        #: per-task weight sets (crab-7b's AVS / AVSS files), applied by :meth:`use_task_weights`
        self.task_weights = None

    def use_task_weights(self, task: str) -> str | None:
        """Put the weight set ``task`` needs into the model (a no-op without sets); returns its name.
        Called by :meth:`prepare` / :meth:`encode`, i.e. under the caller's model lock."""
        return None if self.task_weights is None else self.task_weights.apply(self.model, task)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model: str = "crab-tiny",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        *,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
    ) -> CrabPipeline:
        """Load ``crab-tiny`` (the shipped folder), or any folder in our format."""
        pipe = cls._load(model, device, dtype)
        pipe.max_duration_s = validate_limit(max_duration_s)
        return pipe

    @classmethod
    def _load(cls, model: str, device: str | torch.device, dtype: torch.dtype | None) -> CrabPipeline:
        from .checkpoint.pretrained import load_pretrained, read_card

        folder = TINY_DIR if model == "crab-tiny" else Path(model)
        if model == "crab-tiny" and not (folder / "model.safetensors").is_file():
            log.warning(
                "crab-tiny weights not found in %s: using a RANDOMLY INITIALISED crab-tiny "
                "(answers are noise)",
                folder,
            )
            return cls.random_tiny(device)
        if not folder.exists():
            raise CrabError(f"{model}: unknown model (use crab-tiny or a model folder)")
        net, tok, _ = load_pretrained(folder, device=device, dtype=dtype)
        if tok is None:
            raise CrabError(f"{folder}: model folder has no tokenizer/")
        return cls(net, tok, name=model, trained=True, card=read_card(folder))

    @classmethod
    def random_tiny(cls, device: str | torch.device = "cpu", seed: int = 0) -> CrabPipeline:
        """A randomly initialised crab-tiny with a tokenizer trained on the task texts."""
        from .model.builder import build_model
        from .presets import crab_tiny
        from .tokenizer import task_corpus

        cfg = crab_tiny()
        tok = CrabTokenizer.train_bpe(task_corpus(), cfg)
        net = build_model(cfg, seed=seed).to(device)
        return cls(net, tok, name="crab-tiny (random weights)", trained=False)

    # ------------------------------------------------------------------ media
    def _key(self, video, audio, image, frames, audio_mode, segs, frame_index, need_seg, limit):
        def stamp(p):
            if p is None:
                return None
            try:
                st = os.stat(p)
                return (str(Path(p).resolve()), st.st_mtime_ns, st.st_size)
            except OSError:
                return (str(p), None, None)

        return (
            stamp(video),
            stamp(audio),
            stamp(image),
            frames,
            audio_mode,
            segs,
            frame_index,
            need_seg,
            limit,
        )

    def encode(
        self,
        task: str,
        video=None,
        audio=None,
        image=None,
        frame_index: int | None = None,
        variant: str | None = None,
        *,
        max_duration_s: float | None = None,
    ) -> tuple[EncodedMedia, bool, float, float]:
        """Load and encode a clip for ``task``; returns ``(media, cached, load_s, encode_s)``.

        ``max_duration_s`` overrides :attr:`max_duration_s` for this call; ``variant=None`` picks one as
        :func:`resolve_inputs` does.
        """
        variant, frame_index, _ = resolve_inputs(task, video, image, frame_index, variant)
        media, _, cached, load_s, enc_s = self._encode(
            task, video, audio, image, frame_index, variant, max_duration_s
        )
        return media, cached, load_s, enc_s

    def _encode(
        self,
        task: str,
        video,
        audio,
        image,
        frame_index: int | None,
        variant: str,
        max_duration_s: float | None,
    ) -> tuple[EncodedMedia, list[str], bool, float, float]:
        from .media import load_clip

        limit = self.max_duration_s if max_duration_s is None else validate_limit(max_duration_s)
        spec = get_task(task)
        pv = spec.variant(variant)
        s = self.model.config.vision.image_size
        # 'single' picks one second of a clip whose nominal length is the task's frame count
        segs = spec.num_frames if pv.audio_mode == "single" else pv.num_seconds
        weights = self.use_task_weights(task)
        key = self._key(
            video, audio, image, spec.num_frames, pv.audio_mode, segs, frame_index, spec.needs_mask, limit
        ) + (weights,)
        if key in self._cache:
            self._cache.move_to_end(key)
            media, notes = self._cache[key]
            return media, list(notes), True, 0.0, 0.0
        t0 = time.perf_counter()
        clip = load_clip(
            video=video,
            audio=audio,
            image=image,
            task_frames=spec.num_frames,
            audio_mode=pv.audio_mode if (audio or video) else None,
            image_size=s,
            frame_index=frame_index,
            audio_segments=segs,
            max_duration_s=limit,
        )
        t1 = time.perf_counter()
        frames = clip.frames if "video" in pv.blocks else None
        img = clip.image
        if img is None and ("image" in pv.blocks or spec.needs_mask):
            if clip.frames is None:
                raise TaskError(f"task {task!r} needs an image or a video")
            idx = min(frame_index or 0, clip.frames.shape[0] - 1)
            img = clip.frames[idx : idx + 1]
        if "image" in pv.blocks and img is None:
            raise TaskError(f"task {task!r} needs an image")
        if "video" in pv.blocks and frames is None:
            raise TaskError(f"task {task!r} needs a video")
        with torch.no_grad(), internal_errors("encoding the media"):
            media = self.model.encode_media(
                video=frames, audio=clip.audio, image=img, need_seg=spec.needs_mask
            )
        t2 = time.perf_counter()
        self._cache[key] = (media, list(clip.notes))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return media, list(clip.notes), False, t1 - t0, t2 - t1

    # ------------------------------------------------------------------ run
    def prepare(
        self,
        task: str,
        video=None,
        audio=None,
        image=None,
        question: str | None = None,
        frame_index: int | None = None,
        variant: str | None = None,
        *,
        max_duration_s: float | None = None,
    ) -> PreparedInput:
        """Prompt and encoded media of one request (``max_duration_s``, ``variant``: as :meth:`encode`)."""
        from .domain import out_of_domain_notice

        spec = get_task(task)
        variant, frame_index, notes = resolve_inputs(task, video, image, frame_index, variant)
        prompt = build_prompt(spec, question=question, variant=variant, frame_index=frame_index)
        media, media_notes, cached, load_s, enc_s = self._encode(
            task, video, audio, image, frame_index, variant, max_duration_s
        )
        ids = torch.tensor(self.tokenizer.encode(prompt), dtype=torch.long)
        ood = out_of_domain_notice(
            self.model.config.name, self.card, {"video": video, "audio": audio, "image": image}
        )
        return PreparedInput(
            CrabSample(input_ids=ids, media=media, task=task),
            prompt,
            media,
            cached,
            load_s,
            enc_s,
            variant=variant,
            notes=notes + media_notes,
            out_of_domain=ood,
        )

    def run(
        self,
        task: str,
        video=None,
        audio=None,
        image=None,
        question: str | None = None,
        frame_index: int | None = None,
        variant: str | None = None,
        max_new_tokens: int | None = None,
        *,
        max_duration_s: float | None = None,
        force_mask: bool = False,
    ) -> TaskResult:
        """Run ``task`` on the given media files (paths).

        Args:
            max_new_tokens: generation budget (default: the task's); a positive integer.
            max_duration_s: longest accepted stream for this call (default: :attr:`max_duration_s`).
            force_mask: a seg answer without mask tokens still gets a mask (:meth:`force_mask`).

        Raises:
            MediaError: unreadable / unsuitable / too long media. TaskError: inputs that do not fit the
                task, or a ``max_new_tokens`` that is not a positive integer.
        """
        t0 = time.perf_counter()
        spec = get_task(task)
        if max_new_tokens is not None and (
            isinstance(max_new_tokens, bool)
            or not isinstance(max_new_tokens, numbers.Integral)
            or max_new_tokens < 1
        ):
            raise TaskError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        prep = self.prepare(
            task, video, audio, image, question, frame_index, variant, max_duration_s=max_duration_s
        )
        t1 = time.perf_counter()
        with internal_errors("generating the answer"):
            gen = self.model.generate([prep.sample], max_new_tokens=max_new_tokens or spec.max_new_tokens)
        t2 = time.perf_counter()
        result = self.result_from_generation(
            task,
            prep,
            gen,
            {"load": prep.load_s, "encode": prep.encode_s, "generate": t2 - t1, "total": t2 - t0},
        )
        return self.force_mask(prep, result) if force_mask else result

    def result_from_generation(
        self, task: str, prep: PreparedInput, gen, timings: dict[str, float], index: int = 0
    ) -> TaskResult:
        """Turn sample ``index`` of a :class:`CrabGeneration` into a :class:`TaskResult`."""
        n = int(gen.decode.lengths[index])
        ids = gen.decode.sequences[index, :n].tolist()
        if ids and ids[-1] == self.model.config.llm.eos_token_id:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids)
        mask = logits = None
        if gen.masks[index] is not None:
            lg = gen.masks[index].float().cpu()
            logits = lg.numpy()
            mask = lg.argmax(0).numpy() if lg.shape[0] > 1 else (lg[0].sigmoid() > 0.5).numpy()
        return TaskResult(
            task=task,
            text=text,
            parsed=parse(task, text),
            mask=mask,
            mask_logits=logits,
            prompt=prep.prompt,
            token_ids=prep.sample.input_ids.tolist() + ids,
            answer_ids=ids,
            timings=timings,
            cached=prep.cached,
            variant=prep.variant,
            notes=list(prep.notes),
            out_of_domain=prep.out_of_domain,
        )

    def force_mask(self, prep: PreparedInput, result: TaskResult) -> TaskResult:
        """Decode a mask for a seg answer that has none: append ``<mask_start><mask_0..N><mask_end>`` to the
        answer and run it teacher-forced (``result`` is updated in place, with a note, and returned).

        A result that already has a mask, or a task / model without a mask decoder, is returned unchanged.
        """
        if (
            result.mask is not None
            or not get_task(task := result.task).needs_mask
            or self.model.seg_module is None
        ):
            return result
        if prep.media.seg_features is None:
            return result
        ids = self.model.config.token_ids
        span = [ids["<mask_start>"], *self.model.config.mask_token_ids, ids["<mask_end>"]]
        full = torch.cat(
            [prep.sample.input_ids, torch.tensor(list(result.answer_ids) + span, dtype=torch.long)]
        )
        with torch.no_grad(), internal_errors("decoding the mask"):
            out = self.model([CrabSample(input_ids=full, media=prep.media, task=task)])
        if not out.pred_masks:
            return result
        lg = out.pred_masks[0].float().cpu()
        result.mask_logits = lg.numpy()
        result.mask = lg.argmax(0).numpy() if lg.shape[0] > 1 else (lg[0].sigmoid() > 0.5).numpy()
        result.notes.append(
            "the answer had no mask tokens: the mask was decoded by appending them to the answer (forced)"
        )
        return result
