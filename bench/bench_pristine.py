"""A new user's server, measured: pristine Debian 12 booted with systemd (tests/system/pristine.py).

Usage (root, debootstrap + systemd-container): .venv/bin/python bench/bench_pristine.py [--runs 2]
Per run: container boot time, cold `make deploy` (the README's first command, nothing cached inside the server)
broken down by step from the audit log, the converged re-run, and after `systemctl poweroff` + boot, the time
until the hub answers without anyone running a runbook. Writes the section `pristine` of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

from common import REPO, median, write_section

sys.path.insert(0, str(REPO / "tests" / "system"))
sys.path.insert(0, str(REPO / "lib"))
from pristine import Container, ensure_root  # noqa: E402
from scenario import wait_hub  # noqa: E402


def one_run(i: int) -> dict:
    box = Container("bookworm", f"hrb-bench-{os.getpid()}-{i}", log=lambda m: None).create()
    try:
        out = {"boot": box.boot()}
        box.clone_checkout()
        t0 = time.monotonic()
        box.run("cd /root/hubrunbook && make deploy", timeout=1800)
        out["deploy"] = time.monotonic() - t0
        audit = [json.loads(x) for x in box.path("/opt/hubrunbook/state/audit.jsonl").read_text().splitlines()]
        out["steps"] = {f"{a['runbook']}.{a['step']}": a["seconds"] for a in audit}
        t0 = time.monotonic()
        box.run("cd /root/hubrunbook && make deploy", timeout=600)
        out["converged"] = time.monotonic() - t0
        box.poweroff()
        t0 = time.monotonic()
        box.boot()
        wait_hub(120)
        out["reboot_to_hub"] = time.monotonic() - t0
        return out
    finally:
        box.poweroff()
        box.remove_dir()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.monotonic()
    ensure_root("bookworm")
    root_s = time.monotonic() - t0
    runs = [one_run(i) for i in range(args.runs)]
    steps = defaultdict(list)
    for r in runs:
        for k, v in r["steps"].items():
            steps[k].append(v)
    fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
    rows = [("container boot to `systemctl is-system-running` = running", [r["boot"] for r in runs]),
            ("cold `make deploy` (tool venv, python3-venv from Debian, Node.js from PyPI, proxy, hub env, users, unit)",
             [r["deploy"] for r in runs]),
            ("converged `make deploy` (no changes)", [r["converged"] for r in runs]),
            ("`systemctl poweroff`, boot the same root: boot command to `/hub/api` 200", [r["reboot_to_hub"] for r in runs])]
    body = [
        "## A pristine Debian 12 server (issue: pristine server and service)",
        "",
        f"`.venv/bin/python bench/bench_pristine.py --runs {args.runs}`: each run boots a fresh copy of the cached "
        "debootstrap root (minbase + python3, git, make, systemd; no Node.js) with `systemd-nspawn -b` and runs the "
        "README's first command inside on a fresh clone. Nothing is cached inside the server: uv, npm and pip "
        "download everything (the host's registry mirrors and network).",
        "",
        "| what | median | runs (s) |",
        "|---|---|---|",
        *[f"| {name} | {median(xs):.1f} s | {fmt(xs)} |" for name, xs in rows],
        "",
        f"Building the root itself (debootstrap, once per suite and package list, then cached): {root_s:.0f} s "
        "this time (0 when cached; about 70 s measured when not).",
        "",
        "Cold `make deploy`, median seconds per step (from `state/audit.jsonl`; the rest is the tool venv, papermill "
        "and kernel start-up):",
        "",
        "| step | median s |",
        "|---|---|",
        *[f"| {k} | {median(v):.1f} |" for k, v in steps.items()],
    ]
    write_section("pristine", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
