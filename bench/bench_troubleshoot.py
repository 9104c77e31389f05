"""Benchmark the troubleshoot scan: a healthy deployment and broken ones (target: a few seconds, probes bounded).

Variants, each on a sandbox deployment built from the shared installed env (tests/support/deployment.py):
(a) healthy, running hub;
(b) broken: a configurable-http-proxy with another token on the proxy API port, hub exited with the 403 (guide §3.2);
(c) broken: a program that accepts connections on the public port and never answers (the worst case for the
    HTTP probes: each must give up at its timeout), hub started by hand behind it.
For each: the scan in-process (`run_checks`, median of --scans) and troubleshoot.ipynb with papermill
(diagnosis only, kernel start included, median of --runs). Writes docs/benchmarks.md (section "troubleshoot").
Usage: .venv/bin/python bench/bench_troubleshoot.py [--runs 3] [--scans 10]   (root)
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import median, write_section  # noqa: E402

from hubrunbook.hub import service  # noqa: E402
from hubrunbook.troubleshoot.diagnose import run_checks  # noqa: E402
from support.deployment import Deployment  # noqa: E402
from support.sandbox import ensure_shared_install  # noqa: E402


def blackhole(port: int) -> socket.socket:
    """Listens on *port* (the kernel completes connections) but never accepts or answers."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def measure(d: Deployment, scans: int, runs: int, tmp: Path) -> tuple[list[float], list[float], set[str]]:
    scan_s, errors = [], set()
    for _ in range(scans):
        t0 = time.perf_counter()
        report = run_checks(d.params, timeout_per_check=d.params.scan_timeout)
        scan_s.append(time.perf_counter() - t0)
        errors = report.ids("error")
    nb_s = []
    for i in range(runs):
        t0 = time.perf_counter()
        d.troubleshoot(tmp, tag=f"bench-{i}")
        nb_s.append(time.perf_counter() - t0)
    return scan_s, nb_s, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scans", type=int, default=10)
    args = ap.parse_args()
    shared = ensure_shared_install()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hrb-bench-ts-") as tmp:
        tmp = Path(tmp)
        d = Deployment(shared, "bench-healthy").build()
        try:
            rows.append(("(a) healthy, hub running", *measure(d, args.scans, args.runs, tmp)))
        finally:
            d.teardown()

        d = Deployment(shared, "bench-403").build()
        try:
            service.stop_managed_hub(d.params)
            d.start_proxy_by_hand("bench-other-token-0123456789")
            d.start_hub_by_hand(wait_exit=20)
            rows.append(("(b) broken: proxy with another token, hub exited (403)", *measure(d, args.scans, args.runs, tmp)))
        finally:
            d.teardown()

        d = Deployment(shared, "bench-blackhole").build(start=False)
        hole = blackhole(d.params.port)
        try:
            d.start_hub_by_hand()
            time.sleep(8)  # the hub comes up behind the proxy that could not listen
            rows.append(("(c) broken: public port held by a program that never answers", *measure(d, args.scans, args.runs, tmp)))
        finally:
            hole.close()
            d.teardown()

    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    table = "\n".join(
        f"| {name} | {median(s):.2f} s | {max(s):.2f} s | {median(n):.1f} s ({fmt(n)}) | {', '.join(sorted(e)) or 'none'} |"
        for name, s, n, e in rows)
    body = f"""## troubleshoot.ipynb (issue 5: diagnosis catalog)

`.venv/bin/python bench/bench_troubleshoot.py --runs {args.runs} --scans {args.scans}` (root). Deployments share the
installed hub env; every check runs in parallel, the scan is bounded by `scan_timeout` (20 s), each HTTP probe by
2–3 s, each subprocess by its own timeout.

| variant | scan median | scan max | troubleshoot.ipynb (papermill, diagnosis only) | error findings |
|---|---|---|---|---|
{table}

Target: a full scan in a few seconds. The notebook figure includes the kernel start (~2 s); diagnosis only, so no re-check.
Variant (c) is the bound in action: `GET /hub/api` through the public port waits its full 3 s timeout."""
    write_section("troubleshoot", body)
    print(body)


if __name__ == "__main__":
    main()
