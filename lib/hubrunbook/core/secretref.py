"""Secret references (``env:NAME`` / ``file:/path``), their resolution and masking.

Secrets are never parameter values; parameters only say where a secret lives.
Every resolved value is registered so that :func:`mask` hides it from anything
displayed or logged.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from hubrunbook.core.errors import SecretError

MASK = "********"
_known: set[str] = set()
_answers: dict[str, str] = {}  # env variable -> what the operator typed at the prompt (memory only)

ENV_RE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
FILE_RE = re.compile(r"^file:(/.+)$")


def validate_ref(value: str, name: str) -> str:
    """Return *value* if it is a well-formed reference (or empty); raise ValueError otherwise."""
    if value.startswith("file:") and FILE_RE.match(value):
        path = value[5:]
        if ".." in Path(path).parts or any(not ch.isprintable() for ch in path):
            raise ValueError(f"{name}: the file path must be a plain absolute path, without '..' or control "
                             f"characters; got {value!r}")
    if value == "" or ENV_RE.match(value) or FILE_RE.match(value):
        return value
    raise ValueError(
        f"{name} must name where the secret lives, as 'env:VARIABLE' or 'file:/absolute/path' "
        "(a literal secret would be written into the executed notebook); got a literal value"
    )


def register(value: str) -> str:
    """Remember *value* as a secret so :func:`mask` hides it; returns it."""
    if value and len(value) >= 4:
        _known.add(value)
    return value


def mask(text: str) -> str:
    """Replace every registered secret value in *text*."""
    if not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _private_problem(st: os.stat_result, path: Path, name: str) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return f"{name}: {path} is a symlink; give the path of the file itself (a symlink is never followed for a secret)"
    if not stat.S_ISREG(st.st_mode):
        return f"{name}: {path} is not a regular file"
    if st.st_uid != os.geteuid():
        return (f"{name}: secret file {path} is owned by uid {st.st_uid}, not by uid {os.geteuid()} who runs the "
                f"runbook; its owner could change the secret at any time. Fix: chown {os.geteuid()} {path}")
    if st.st_mode & 0o077:
        return (f"{name}: secret file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"others can read it. Fix: chmod 600 {path}")
    return None


def check_file_private(path: Path, name: str) -> None:
    """Raise SecretError unless *path* is a regular file (not a symlink), owned by the user running the runbook and
    readable by its owner only."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SecretError(f"{name}: secret file {path} does not exist; create it with mode 0600") from None
    problem = _private_problem(st, Path(path), name)
    if problem:
        raise SecretError(problem)


def read_private(path: Path, name: str) -> str:
    """The stripped text of the secret file *path*, checked as :func:`check_file_private` on the open file itself
    (no symlink followed, no window between the check and the read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SecretError(f"{name}: secret file {path} does not exist; create it with mode 0600") from None
    except OSError:  # ELOOP: the last component is a symlink
        check_file_private(path, name)
        raise
    try:
        problem = _private_problem(os.fstat(fd), Path(path), name)
        if problem:
            raise SecretError(problem)
        with os.fdopen(os.dup(fd), "r") as fh:
            return fh.read().strip()
    finally:
        os.close(fd)


def resolve(ref: str, name: str, *, prompt: bool = True) -> str:
    """Return the secret behind *ref*; side effect: registers it for masking.

    Asked for with a hidden prompt only where an operator can answer (an interactive kernel, see
    :func:`can_prompt`): an ``env:NAME`` whose variable is unset or empty, and an empty reference when *prompt*.
    The answer stays in this process's memory (asked once per variable per kernel); it is never put into the
    environment, where the hub and other children would inherit it. A headless (papermill) run fails instead. Read-only.
    """
    if m := ENV_RE.match(ref):
        var = m.group(1)
        value = os.environ.get(var, "") or _answers.get(var, "")
        if not value and can_prompt():
            value = _answers[var] = _ask(f"{name} (environment variable {var} is not set)")
        if not value:
            raise SecretError(
                f"{name}: environment variable {var} is not set or empty; "
                f"export it in the environment that runs the runbook"
            )
        return register(value)
    if m := FILE_RE.match(ref):
        path = Path(m.group(1))
        value = read_private(path, name)
        if not value:
            raise SecretError(f"{name}: secret file {path} is empty")
        return register(value)
    if ref == "" and prompt:
        if can_prompt():
            return _ask(name)
        raise SecretError(f"{name}: no secret reference given and this run cannot prompt (no interactive kernel); "
                          "set it to 'env:VARIABLE' or 'file:/path' for headless runs")
    raise SecretError(f"{name}: no secret reference given; set it to 'env:VARIABLE' or 'file:/path'")


def can_prompt() -> bool:
    """True in an IPython kernel whose current request lets it read from the operator (JupyterLab: yes; papermill,
    nbval and nbconvert execute with allow_stdin false; a plain script has no kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


def _ask(what: str) -> str:
    """Ask the operator for a secret with a hidden prompt (the kernel's getpass: the answer is not echoed and not
    stored in the notebook)."""
    import getpass

    value = getpass.getpass(f"{what}: ")
    if not value:
        raise SecretError(f"{what}: empty secret entered")
    return register(value)


def write_private(path: Path, value: str) -> None:
    """Write *value* to *path* atomically with mode 0600 (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, value.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
