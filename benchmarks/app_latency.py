"""App latency on this machine (crab-tiny): start to ready, upload-to-answer with routing views for
a 10-s clip, and a follow-up question on the same clip. Writes benchmarks/results/app.md.

Usage: ``python benchmarks/app_latency.py [--reps 5] [--tokens 16]``. Targets: start <= 15 s,
upload -> answer + views median <= 1.5 s, follow-up <= 0.5 s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _app_server as srv  # noqa: E402


def _run(client, video, task, question, tokens):
    from gradio_client import handle_file

    t0 = time.perf_counter()
    out = client.predict(
        handle_file(str(video)),
        None,
        None,
        task,
        question,
        0,
        None,
        tokens,
        "all",
        "all",
        "weights",
        "unit",
        "all",
        api_name="/run",
    )
    return time.perf_counter() - t0, out[0]


def measure(reps: int, tokens: int) -> dict:
    from gradio_client import Client

    videos = srv.clips(reps + 1)
    proc, url, ready = srv.start()
    try:
        client = Client(url, verbose=False)
        _run(client, videos[-1], "ave", "", tokens)  # warm-up (first-call overheads)
        first, follow, statuses = [], [], []
        for i, v in enumerate(videos[:reps]):
            dt, status = _run(client, v, "ave", "", tokens)
            first.append(dt)
            statuses.append(status)
            dt, status = _run(client, v, "avqa", f"Is the guitar playing? ({i})", tokens)  # encodes for AVQA
            dt, status = _run(client, v, "avqa", "Can you hear a dog?", tokens)  # follow-up: cached clip
            follow.append(dt)
            statuses.append(status)
        return {
            "ready": ready,
            "first": first,
            "follow": follow,
            "cached": sum("from cache" in s for s in statuses[1::2]),
        }
    finally:
        srv.stop(proc)


def report(res: dict, reps: int, tokens: int) -> str:
    med_first, med_follow = statistics.median(res["first"]), statistics.median(res["follow"])
    ok = lambda v, t: "yes" if v <= t else "**no**"  # noqa: E731
    trained = (srv.ROOT / "assets" / "crab-tiny" / "model.safetensors").is_file()
    return "\n".join(
        [
            f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, shared CPU; model: crab-tiny "
            f"({'trained weights' if trained else 'random weights'}), "
            f"answers capped at {tokens} tokens; {reps} clips; "
            f"{time.strftime('%Y-%m-%d %H:%M')}.",
            "",
            "| measure | median (s) | all (s) | target (s) | met |",
            "|---|---|---|---|---|",
            f"| app start to ready (`python app.py`) | {res['ready']:.2f} | - | 15 | "
            f"{ok(res['ready'], 15)} |",
            f"| 10-s clip: upload -> answer + routing views (AVE) | {med_first:.2f} | "
            f"{', '.join(f'{x:.2f}' for x in res['first'])} | 1.5 | {ok(med_first, 1.5)} |",
            f"| follow-up question, same clip (AVQA, cached features: {res['cached']}/{reps}) | "
            f"{med_follow:.2f} | "
            f"{', '.join(f'{x:.2f}' for x in res['follow'])} | 0.5 | {ok(med_follow, 0.5)} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tokens", type=int, default=16, help="answer budget (a random model never stops early)")
    args = p.parse_args(argv)
    res = measure(args.reps, args.tokens)
    text = report(res, args.reps, args.tokens)
    srv.write_section("Latency (benchmarks/app_latency.py)", text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
