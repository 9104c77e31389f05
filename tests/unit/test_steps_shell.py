"""Step results, the run journal, and the command runner."""
import json
from pathlib import Path

import pytest

from hubrunbook.core.errors import CommandError, PreflightError, VerificationError
from hubrunbook.core.params import build_params
from hubrunbook.core.shell import run_command, stream_command
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, Run, StepResult


def test_result_renders_status_and_rows():
    r = StepResult("ensure_x", CHANGED, "did <it>", rows=[("a", "ok", "b")])
    assert repr(r).startswith("[changed] ensure_x: did <it>")
    assert "&lt;it&gt;" in r._repr_html_() and "<table class='hrb-table'>" in r._repr_html_()


def test_run_records_audit_and_summary(tmp_path):
    params = build_params({"prefix": str(tmp_path / "p")})
    params.layout.state_dir.mkdir(parents=True)
    run = Run("t", params)

    def ensure_a(p, *, dry_run=False):
        return StepResult("ensure_a", UNCHANGED if not dry_run else "would change", "fine")

    def check_b(p):
        return StepResult("check_b", OK, "good")

    run(ensure_a)
    run(check_b)
    s = run.summary()
    assert s.ok and "2 steps" in s.headline()
    lines = [json.loads(x) for x in (params.layout.state_dir / "audit.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == ["ensure_a", "check_b"]


def test_failed_step_raises_named_error_and_summary_fails(tmp_path):
    run = Run("t", build_params({"prefix": str(tmp_path / "p")}))

    def ensure_c(p, *, dry_run=False):
        raise PreflightError("port 8000 is held by pid 1")

    with pytest.raises(PreflightError, match="step ensure_c failed: port 8000"):
        run(ensure_c)
    assert run.results[-1].status == FAILED
    with pytest.raises(VerificationError, match="ensure_c"):
        run.summary()


def test_dry_run_is_passed_and_no_audit_written(tmp_path):
    params = build_params({"prefix": str(tmp_path / "p"), "dry_run": True})
    params.layout.state_dir.mkdir(parents=True)
    seen = {}

    def ensure_d(p, *, dry_run=False):
        seen["dry"] = dry_run
        return StepResult("ensure_d", "would change", "x")

    Run("t", params)(ensure_d)
    assert seen["dry"] is True and not (params.layout.state_dir / "audit.jsonl").exists()


def test_run_command_timeout_and_failure():
    with pytest.raises(CommandError, match="timed out after 0.5 s"):
        run_command(["sleep", "5"], timeout=0.5)
    with pytest.raises(CommandError, match="command not found"):
        run_command(["/nonexistent/tool"])
    assert run_command(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_stream_command_lines_and_timeout():
    got = []
    out = stream_command(["sh", "-c", "echo one; echo two"], on_line=got.append)
    assert got == ["one", "two"] and out == "one\ntwo\n"
    with pytest.raises(CommandError, match="timed out"):
        stream_command(["sleep", "5"], timeout=0.5, on_line=got.append)


def test_one_run_at_a_time_per_prefix(tmp_path):
    """A second run on the same prefix fails at once, naming the process that holds it; the end of a run frees it."""
    import subprocess
    import sys
    import time

    from hubrunbook.core.runlock import LockedError, lock_path

    prefix = str(tmp_path / "locked")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hubrunbook.core.params import build_params; from hubrunbook.core.steps import Run\n"
        f"Run('configure', build_params({{'prefix': {prefix!r}}})); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(LockedError, match=f"pid {holder.pid}, runbook configure"):
            Run("install", build_params({"prefix": prefix, "dry_run": True}))
        assert time.monotonic() - t0 < 2  # at once, not after a wait
        assert not Path(prefix).exists()  # the lock lives outside the prefix: nothing was created
    finally:
        holder.kill()
        holder.wait()
    run = Run("install", build_params({"prefix": prefix}))  # the holder's end released it
    run.release()
    assert lock_path(prefix).exists()
