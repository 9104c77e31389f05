"""Shared helpers for benchmarks: timing, medians, writing a section of docs/benchmarks.md."""
from __future__ import annotations

import platform
import re
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
BENCH_ROOT = Path("/tmp/hrb-bench")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sh(*args, **kw) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def run_runbook(name: str, params_file: Path, out: Path) -> None:
    """runbooks/<name>.ipynb with the parameters in *params_file*, as `make deploy` runs it (the one runner)."""
    from hubrunbook.core.params import load_yaml
    from hubrunbook.core.runner import execute_runbook

    execute_runbook(name, out, load_yaml(params_file))


def machine() -> str:
    import os

    return f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section between <!-- bench:key --> markers in docs/benchmarks.md."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = f"{start}\n{body.strip()}\n\n_Measured {stamp} on {machine()}._\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nFigures written by the scripts in `bench/`; never asserted in tests.\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
