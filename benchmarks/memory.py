"""Peak memory of ``python -m crab_core infer`` against input length: it must stay flat.

For 10 s, 60 s, 10 min and 60 min inputs of four kinds (a video with its own audio track of that length;
a video-only file plus a separate audio file of that length; a 10-s video whose audio track has that
length; a 10-s video-only file plus a separate audio file of that length), runs
``python -m crab_core infer --model crab-tiny --task ave ... --max-duration 3600`` in a fresh
process and reads its peak resident memory (``ru_maxrss`` from ``os.wait4``, the child and the ffmpeg
processes it waited for). Each input is also run at the default limit (60 s) to show that longer ones are
rejected with a one-line error. Inputs are generated with ffmpeg in a temporary folder (deleted after).

Usage: ``python benchmarks/memory.py [--lengths 10,60,600,3600] [--max-ratio 1.5] [--out DIR]``; writes
``memory.md`` and ``memory.json`` to ``benchmarks/results/`` and exits 1 when a peak exceeds
``--max-ratio`` times the 10-s peak of its kind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import header, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "track": "video + its own audio track, both L long",
    "separate": "video-only file L long + separate mp3 L long",
    "long-track": "10-s video whose audio track is L long",
    "long-audio": "10-s video-only file + separate mp3 L long (the issue's case)",
}
DEFAULT_LIMIT = 60.0


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _video_args(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-t", f"{seconds}", "-i", "testsrc=size=320x240:rate=2"]


def _audio_args(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-t", f"{seconds}", "-i", "sine=frequency=440:sample_rate=44100"]


def make_inputs(folder: Path, seconds: float) -> dict[str, list[str]]:
    """Generate the four kinds of ``seconds``-long input; returns the ``infer`` media arguments of each."""
    tag = f"{seconds:g}s"
    venc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    track = folder / f"track_{tag}.mp4"
    _ffmpeg(*_video_args(seconds), *_audio_args(seconds), *venc, "-c:a", "aac", "-b:a", "48k", str(track))
    silent, audio = folder / f"silent_{tag}.mp4", folder / f"audio_{tag}.mp3"
    _ffmpeg(*_video_args(seconds), *venc, "-an", str(silent))
    _ffmpeg(*_audio_args(seconds), "-c:a", "libmp3lame", "-b:a", "32k", str(audio))
    long_track, short = folder / f"longtrack_{tag}.mp4", folder / f"silent10_{tag}.mp4"
    _ffmpeg(*_video_args(10), *_audio_args(seconds), *venc, "-c:a", "aac", "-b:a", "48k", str(long_track))
    _ffmpeg(*_video_args(10), *venc, "-an", str(short))
    return {
        "track": ["--video", str(track)],
        "separate": ["--video", str(silent), "--audio", str(audio)],
        "long-track": ["--video", str(long_track)],
        "long-audio": ["--video", str(short), "--audio", str(audio)],
    }


def run_infer(media: list[str], limit: float | None, tokens: int) -> dict:
    """One ``infer`` in a fresh process: exit code, peak RSS (MiB), wall time and the error line if any."""
    cmd = [
        sys.executable,
        "-m",
        "crab_core",
        "infer",
        "--model",
        "crab-tiny",
        "--task",
        "ave",
        *media,
        "--max-new-tokens",
        str(tokens),
    ]
    if limit is not None:
        cmd += ["--max-duration", f"{limit:g}"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.startswith("error:")]
    return {
        "rc": proc.returncode,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "wall_s": wall,
        "error": lines[-1] if lines else None,
    }


def measure(lengths: list[float], tokens: int, folder: Path) -> list[dict]:
    rows = []
    for seconds in lengths:
        t0 = time.perf_counter()
        inputs = make_inputs(folder, seconds)
        made = time.perf_counter() - t0
        for kind, media in inputs.items():
            row = {"kind": kind, "seconds": seconds, "make_s": made / len(inputs)}
            row["raised"] = run_infer(media, 3600.0, tokens)
            row["default"] = run_infer(media, None, tokens) if seconds > DEFAULT_LIMIT + 0.5 else None
            rows.append(row)
            sys.stderr.write(
                f"{kind} {seconds:g}s: {row['raised']['peak_rss_mib']:.0f} MiB rc={row['raised']['rc']}\n"
            )
        for path in folder.iterdir():
            path.unlink()
    base = {r["kind"]: r["raised"]["peak_rss_mib"] for r in rows if r["seconds"] == min(lengths)}
    for r in rows:
        r["ratio"] = r["raised"]["peak_rss_mib"] / base[r["kind"]]
    return rows


def _length(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 600 else f"{seconds:g} s"


def report(
    rows: list[dict], command: str, max_ratio: float, tokens: int, runtime_s: float
) -> tuple[str, bool]:
    flat = all(r["ratio"] <= max_ratio and r["raised"]["rc"] == 0 for r in rows)
    worst = max(r["ratio"] for r in rows)
    lines = [
        "# Peak memory of `infer` against input length",
        "",
        header(command, torch.get_num_threads()),
        "",
        f"Each cell: peak RSS of `python -m crab_core infer --model crab-tiny --task ave <media> "
        f"--max-new-tokens {tokens} --max-duration 3600` in a fresh process (ru_maxrss from os.wait4), "
        "and its "
        f"ratio to the 10-s input of the same kind. Flat means every ratio <= {max_ratio}.",
        "",
        "| kind | length | peak RSS (MiB) | ratio to 10 s | wall (s) | at the default limit (60 s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["default"]
        default = (
            "accepted (<= limit)"
            if d is None
            else (f"rejected, exit {d['rc']}: {d['error']}" if d["rc"] != 0 else "**accepted**")
        )
        raised = r["raised"]
        rss = f"{raised['peak_rss_mib']:.0f}" if raised["rc"] == 0 else f"failed (exit {raised['rc']})"
        lines.append(
            f"| {r['kind']} | {_length(r['seconds'])} | {rss} | {r['ratio']:.2f} | "
            f"{raised['wall_s']:.1f} | {default} |"
        )
    lines += [
        "",
        "Kinds: " + "; ".join(f"**{k}**: {v}" for k, v in KINDS.items()) + ".",
        "",
        f"Result: {'flat' if flat else '**not flat**'} (largest ratio {worst:.2f}, limit {max_ratio}).",
        "",
        f"Benchmark runtime: {runtime_s / 60:.1f} min (input generation included; the wall times include "
        "loading the model, on a shared 2-core machine).",
        "",
    ]
    return "\n".join(lines), flat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="10,60,600,3600", help="input lengths in seconds (first = baseline)")
    p.add_argument("--tokens", type=int, default=16, help="--max-new-tokens of each infer")
    p.add_argument("--max-ratio", type=float, default=1.5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    lengths = sorted(float(x) for x in args.lengths.split(","))
    command = "python benchmarks/memory.py" + (
        "" if args.lengths == "10,60,600,3600" else f" --lengths {args.lengths}"
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crab-memory-") as tmp:
        rows = measure(lengths, args.tokens, Path(tmp))
    runtime = time.perf_counter() - t0
    md, flat = report(rows, command, args.max_ratio, args.tokens, runtime)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "memory.json").write_text(
        json.dumps(
            {
                "command": command,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "max_ratio": args.max_ratio,
                "flat": flat,
                "runtime_s": runtime,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    write_report(args.out, "memory.md", md)
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
