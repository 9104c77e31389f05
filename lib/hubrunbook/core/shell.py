"""Running external commands: argument lists, timeouts, captured and masked output."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from hubrunbook.core.errors import CommandError
from hubrunbook.core.secretref import mask


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(mask(text or "").splitlines()[-lines:])


def run_command(
    args: Sequence[str | Path],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = True,
    what: str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run *args* (no shell), capture output; raise CommandError (masked output tail) on failure or timeout.

    *input* is fed on stdin (the way to pass a secret: never in argv); without it stdin is /dev/null.
    """
    argv = [str(a) for a in args]
    label = what or " ".join(argv[:3])
    full_env = {**os.environ, **(env or {})}
    try:
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd, **stdin)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise CommandError(f"{label}: timed out after {timeout:g} s\n{_tail(out)}") from None
    except FileNotFoundError:
        raise CommandError(f"{label}: command not found: {argv[0]}") from None
    if check and proc.returncode != 0:
        raise CommandError(
            f"{label}: exit code {proc.returncode}\n--- output (last lines) ---\n{_tail(proc.stdout + proc.stderr)}"
        )
    return proc


def stream_command(
    args: Sequence[str | Path],
    *,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    on_line: Callable[[str], None] = print,
    what: str | None = None,
) -> str:
    """Run *args*, passing each (masked) output line to *on_line* as it comes; return all output.

    Raises CommandError on non-zero exit or when *timeout* passes (the process is killed).
    """
    argv = [str(a) for a in args]
    label = what or " ".join(argv[:3])
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise CommandError(f"{label}: command not found: {argv[0]}") from None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            raise CommandError(f"{label}: timed out after {timeout:g} s\n{_tail(''.join(lines))}")
        if sel.select(timeout=min(left, 1.0)):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            on_line(mask(line.rstrip()))
    proc.wait()
    out = "".join(lines)
    if proc.returncode != 0:
        raise CommandError(f"{label}: exit code {proc.returncode}\n--- output (last lines) ---\n{_tail(out)}")
    return out
