"""Benchmark many first logins at once: each user logs in, gets a server and opens /user/<name>/lab through the proxy.

For 20 and 50 users at once (fresh users hrb-bl<pid>-NN made by ensure_users, removed afterwards), on a sandbox hub
built from the shared install (tests/support/load.py):
(a) the hub as hubrunbook configures it: concurrent_spawn_limit and spawn timeouts from cores and memory (auto);
(b) JupyterHub's defaults for comparison: concurrent_spawn_limit 100, Spawner.http_timeout 30 s.
Per run: users who reached their lab, median and slowest time from the first request to the lab page, users told to
retry (429). Writes docs/benchmarks.md (section "load").
Usage (root): HRB_TEST_ROOT=/var/tmp/hrb-bench .venv/bin/python bench/bench_load.py [--sizes 20 50] [--no-defaults]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import write_section  # noqa: E402
from support.load import LoadDeployment, burst, summary  # noqa: E402
from support.sandbox import ensure_shared_install  # noqa: E402

VARIANTS = {"hubrunbook (auto)": {}, "JupyterHub defaults": {"concurrent_spawn_limit": 100, "spawn_timeout": 30}}


def one_run(shared, n: int, variant: str) -> dict:
    d = LoadDeployment(shared, n, tag="bl", **VARIANTS[variant])
    try:
        d.build()
        load = os.getloadavg()[0]
        cap = d.capacity()
        visits = burst(d.params.public_url, d.credentials())
        out = {**summary(visits), "variant": variant, "load": load,
               "limits": f"{cap.concurrent_spawn_limit} / {cap.spawn_timeout} s"}
        print(f"{variant}, {n} users: {out['ok']}/{n} ok, median {out['median']}, slowest {out['slowest']}, "
              f"throttled {out['throttled_users']}, load {load:.1f}; failures: {out['failures'][:3]}", flush=True)
    finally:
        d.teardown()
    return out


def _s(x) -> str:
    return "–" if x is None else f"{x:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--no-defaults", action="store_true", help="skip the JupyterHub-defaults comparison")
    args = ap.parse_args()
    shared = ensure_shared_install()
    rows = []
    for n in args.sizes:
        for variant in VARIANTS:
            if variant != "hubrunbook (auto)" and args.no_defaults:
                continue
            rows.append((n, one_run(shared, n, variant)))
    table = "\n".join(
        f"| {n} | {r['variant']} | {r['limits']} | **{r['ok']}/{r['users']}** | {_s(r['median'])} | {_s(r['slowest'])} | "
        f"{r['throttled_users']} | {r['load']:.1f} |" for n, r in rows)
    reasons = sorted({re.sub(r"hrb-bl\d+-\d+", "<name>", f.split(": ", 1)[1])[:160] for _, r in rows for f in r["failures"]})
    body = f"""## Many first logins at once (issue 8: load)

`HRB_TEST_ROOT=… .venv/bin/python bench/bench_load.py --sizes {' '.join(map(str, args.sizes))}` (root). Each user
logs in with its password at the same moment, follows the redirects as a browser does (spawn, the spawn-pending page
re-loaded every 2 s, the single-user server's OAuth redirects) until `/user/<name>/lab` answers 200 through the
proxy; a 429 is waited out by its Retry-After and the spawn asked again (in a browser the 429 page's countdown does
that, `templates/429.html`). Times run from the first request to the lab page. Fresh users and a freshly started hub per run; the hub env is warm in the page
cache (not dropped: the machine is shared). The 1-minute load average when the burst started says how busy the
machine was with other work (other engineers' test suites ran at the same time).

| users | hub configured as | spawn limit / timeouts | reached their lab | median | slowest | told to retry (429) | load avg |
|---|---|---|---|---|---|---|---|
{table}

{"Failures seen: " + "; ".join(reasons) if reasons else "No failures."}"""
    write_section("load", body)
    print(body)


if __name__ == "__main__":
    main()
