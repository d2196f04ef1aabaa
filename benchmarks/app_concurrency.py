"""Eight concurrent gradio_client users for 60 s on loopback against ``python app.py`` (crab-tiny):
every request must get its answer and the server's memory must stay bounded.
Writes its section of benchmarks/results/app.md.

Usage: ``python benchmarks/app_concurrency.py [--users 8] [--seconds 60] [--tokens 8]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _app_server as srv  # noqa: E402

QUESTIONS = ("Can you hear a dog?", "Is the guitar playing?", "How many instruments are sounding?")


def user(url: str, video: Path, seconds: float, tokens: int, out: dict, idx: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    lat, errors = [], []
    end = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        try:
            res = client.predict(handle_file(str(video)), None, None, "avqa", QUESTIONS[k % len(QUESTIONS)], 0, None,
                                 tokens, "all", "all", "weights", "unit", "all", api_name="/run")
            if not isinstance(res[1], list):
                errors.append("no answer")
            lat.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(repr(exc)[:200])
        k += 1
    out[idx] = (lat, errors)


def sample_rss(pid: int, stop: threading.Event, samples: list) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        samples.append((time.perf_counter(), proc.memory_info().rss / 2**20))
        stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--tokens", type=int, default=8)
    args = p.parse_args(argv)
    videos = srv.clips(args.users, task="avqa", seed=11)
    proc, url, _ = srv.start()
    stop, rss, results = threading.Event(), [], {}
    try:
        mon = threading.Thread(target=sample_rss, args=(proc.pid, stop, rss), daemon=True)
        mon.start()
        threads = [threading.Thread(target=user, args=(url, videos[i % len(videos)], args.seconds, args.tokens,
                                                        results, i)) for i in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        mon.join()
    finally:
        srv.stop(proc)
    lat = [x for v in results.values() for x in v[0]]
    errs = [e for v in results.values() for e in v[1]]
    per_user = [len(v[0]) for v in results.values()]
    mem = [m for _, m in rss]
    first_half = mem[: len(mem) // 2] or mem
    text = "\n".join([
        f"{args.users} gradio_client users, {args.seconds:.0f} s, AVQA on 10-s SynthAV clips (one per user, "
        f"uploaded every call), answers capped at {args.tokens} tokens, queue concurrency 1; "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"- requests answered: {len(lat)} (per user: {per_user}); errors: {len(errs)}"
        + (f" (first: {errs[0]})" if errs else ""),
        f"- latency under load: median {statistics.median(lat):.2f} s, max {max(lat):.2f} s" if lat else "- no answers",
        f"- server RSS: start {mem[0]:.0f} MiB, max {max(mem):.0f} MiB, end {mem[-1]:.0f} MiB "
        f"(max of first half {max(first_half):.0f} MiB)" if mem else "- no memory samples",
        f"- all users answered: {'yes' if all(per_user) and not errs else '**no**'}",
    ])
    srv.write_section("Concurrency (benchmarks/app_concurrency.py)", text)
    sys.stdout.write(text + "\n")
    return 0 if lat and not errs else 1


if __name__ == "__main__":
    sys.exit(main())
