"""Facts about this machine: OS, privileges, interpreters, directory modes, disk."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path


def os_release() -> dict[str, str]:
    """Parse /etc/os-release (empty dict when absent)."""
    data: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                data[k] = v.strip().strip('"')
    except OSError:
        pass
    return data


def is_debian_like() -> bool:
    info = os_release()
    ids = {info.get("ID", "")} | set(info.get("ID_LIKE", "").split())
    return bool(ids & {"debian", "ubuntu"})


def is_root() -> bool:
    return os.geteuid() == 0


def blocking_dir(path: Path) -> Path | None:
    """The first existing ancestor of *path* (itself included) that other users cannot enter, or None."""
    p = Path(path).resolve() if Path(path).exists() else Path(path)
    chain = [p, *p.parents]
    for d in reversed(chain):
        if not d.exists():
            break
        mode = d.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return d
    return None


def world_runnable(path: Path) -> tuple[bool, str]:
    """Whether every user can execute *path* (resolved): o+x on it and on every directory above it."""
    real = Path(os.path.realpath(path))
    if not real.exists():
        return False, f"{real} does not exist"
    if not real.stat().st_mode & stat.S_IXOTH:
        return False, f"{real} is not executable by others"
    block = blocking_dir(real.parent)
    if block is not None:
        return False, f"{real} lies under {block} (mode {stat.S_IMODE(block.stat().st_mode):04o}), which other users cannot enter"
    return True, str(real)


def python_version(python: str | Path) -> tuple[int, ...] | None:
    """Version tuple of the interpreter at *python*, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return tuple(int(x) for x in out.stdout.strip().split("."))


PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
MIN_PYTHON = (3, 10)


def find_hub_python(choice: str) -> tuple[Path | None, str]:
    """Pick the interpreter for the hub env: *choice* or, for 'auto', the first candidate every user can run.

    Returns (path or None, explanation).
    """
    candidates = [choice] if choice != "auto" else [*PYTHON_CANDIDATES, shutil.which("python3") or ""]
    reasons = []
    for cand in filter(None, candidates):
        ok, why = world_runnable(Path(cand))
        if not ok:
            reasons.append(f"{cand}: {why}")
            continue
        ver = python_version(cand)
        if ver is None:
            reasons.append(f"{cand}: does not run")
            continue
        if ver < MIN_PYTHON:
            reasons.append(f"{cand}: Python {'.'.join(map(str, ver))} < 3.10 (JupyterHub 6 needs ≥ 3.10)")
            continue
        return Path(cand), f"{cand} (Python {'.'.join(map(str, ver))}, runnable by every user)"
    return None, "; ".join(reasons) or "no python3 found"


def free_mb(path: Path) -> tuple[Path, int]:
    """Free space (MiB) on the filesystem holding *path* (or its nearest existing ancestor)."""
    p = Path(path)
    while not p.exists():
        p = p.parent
    return p, shutil.disk_usage(p).free // (1024 * 1024)


def make_world_readable(root: Path) -> int:
    """Add read (and, where the owner may execute or enter, execute) permission for everyone below *root*.

    What spawned users run must be readable by them, but installers copy files with the modes they had in their
    cache: a cache filled under umask 077 (a hardened root shell) yields 0600 files in the hub env. Symlinks are
    left alone. Returns the number of entries changed.
    """
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, None]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            want = mode | 0o044 | (0o011 if stat.S_ISDIR(st.st_mode) or mode & 0o100 else 0)
            if want != mode:
                os.chmod(path, want)
                changed += 1
    return changed


def user_name(uid: int) -> str:
    """The account name of *uid*, or 'uid N' when it has none."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def untrusted_reason(path: Path) -> str | None:
    """Why root must not run or load code from *path*, or None (sshd's StrictModes, for root).

    Every existing component, from / down, must be owned by root and not writable by group or others (a sticky
    directory such as /var/tmp is accepted, as its other users cannot rename or remove what root put in it). Symlinks must be root's and their targets are checked the same way. The first missing
    component ends the walk: root creates the rest. Read-only; never follows a link before checking it.
    """
    path = Path(path)
    parts = path.parts
    for i in range(1, len(parts) + 1):
        here = Path(*parts[:i])
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{here} cannot be inspected ({exc.strerror})"
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != 0:
            return f"{here} is owned by {user_name(st.st_uid)}, not root. Fix: chown root: {here} (after checking its content)"
        if stat.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(here))
            return untrusted_reason(target.joinpath(*parts[i:])) if target != here else None
        if mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX and i < len(parts)):
            return (f"{here} is writable by {'others' if mode & 0o002 else f'group {st.st_gid}'} (mode {mode:04o}). "
                    f"Fix: chmod go-w {here}")
    return None


def untrusted_tree_entry(root: Path) -> str | None:
    """The first entry below *root* that another user could have planted or can change, or None.

    Every entry must be owned by root, and no directory may be writable by group or others (then nobody else can
    add, replace or rename a file in the tree). Root's own files are not judged by mode: installers leave some
    0666 lock files. Symlinks are not followed. Read-only; about 0.3 s for a hub env of 30,000 files.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_uid != 0:
                return f"{path} is owned by {user_name(st.st_uid)}, not root"
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022:
                return f"{path} is a directory writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
