"""Homes and notebook dirs of local users: made by root without following what users control, private, checked as the user.

Root works inside directories a user owns, where the user can swap any entry for a symlink at any moment (a check
with ``lstat`` and a ``chmod`` by path afterwards is a race the user wins). So:

- the part of the path above the home (``home_base``) is resolved once and must be root's all the way down: owned by
  root and writable by nobody else (a sticky world-writable dir such as /var/tmp counts as root's, since nobody can
  rename root's entries in it);
- from the home down, every directory is opened with ``O_DIRECTORY|O_NOFOLLOW`` relative to its parent's descriptor,
  created with ``mkdir(dir_fd=…)`` and handed over with ``fchown``/``fchmod`` on the opened descriptor: a symlink
  anywhere is refused, never followed;
- a directory that already exists and is not the user's is never chowned; a component owned by someone other than
  root or the user, or writable by others, is refused;
- homes and notebook dirs hubrunbook makes are 0700 (the hub spawns as the user, nobody else needs to enter).

Whether a user can really use its notebook dir is checked as the user (``setpriv`` to its uid, gid and groups), not
as root, whose view proves nothing about the user's.
"""
from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.shell import run_command

PRIVATE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class MissingDir(PreflightError):
    """A directory on the way to a notebook dir does not exist (the read-only walk found nothing to refuse)."""


def parts_below(path: Path, home: Path) -> list[str]:
    """The names from *home* (exclusive) down to *path*; PreflightError when *path* is not *home* or inside it."""
    path, home = Path(path), Path(home)
    if path != home and home not in path.parents:
        raise PreflightError(f"notebook dir {path} is not inside the home {home}; hubrunbook makes notebook dirs only "
                             "inside the user's own home (notebook_dir must start with <home_base>/{username})")
    names = list(path.relative_to(home).parts)
    if any(n in (".", "..") for n in names) or home.name in ("", ".", ".."):
        raise PreflightError(f"notebook dir {path} has '.' or '..' in it; give a plain path")
    return names


def _foreign_writer(st: os.stat_result, gid: int) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002:
        return f"writable by every user (mode {mode:04o})"
    if mode & 0o020 and st.st_gid != gid:
        return f"writable by group {st.st_gid} (mode {mode:04o})"
    return None


def open_root_dir(path: Path) -> int:
    """Open *path* (resolved) as a descriptor after proving root alone controls it and every directory above it.

    Raises PreflightError naming the first directory another user could change (owner not root, or writable by
    others without the sticky bit). The caller closes the descriptor.
    """
    real = Path(os.path.realpath(path))
    fd = os.open("/", _DIR_FLAGS)
    where = Path("/")
    try:
        for name in ["", *real.parts[1:]]:
            if name:
                where = where / name
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    raise PreflightError(f"{where} does not exist (needed for {path})") from None
                except OSError as exc:
                    raise PreflightError(f"{where} changed while it was opened ({exc.strerror}); run again") from None
                os.close(fd)
                fd = child
            st = os.fstat(fd)
            mode = stat.S_IMODE(st.st_mode)
            if st.st_uid != 0:
                why = f"owned by uid {st.st_uid}, not root"
            elif mode & 0o022 and not mode & stat.S_ISVTX:
                why = f"writable by others than root (mode {mode:04o})"
            else:
                continue
            raise PreflightError(f"{where} is {why}: another user could swap the homes below it. hubrunbook makes homes "
                                 f"only below directories that only root can change; fix {where} or choose another "
                                 "home_base")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, name: str, where: Path) -> int:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise MissingDir(f"{where} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" (to {os.readlink(name, dir_fd=fd)})"
        except OSError:  # swapped again meanwhile
            target = ""
        raise PreflightError(f"{where} is a symlink{target}: not followed. Root never follows a link a user can plant; "
                             "replace it with a directory")
    if not stat.S_ISDIR(st.st_mode):
        raise PreflightError(f"{where} is not a directory; move it away")
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise PreflightError(f"{where} was replaced while it was opened (a symlink?): not followed; run again") from None
        raise


def _make_child(fd: int, name: str, where: Path, uid: int, gid: int) -> int:
    """mkdir *name* below *fd* (0700), open it without following, prove it is the empty root dir just made, hand it over."""
    try:
        os.mkdir(name, PRIVATE, dir_fd=fd)
    except FileExistsError:
        raise PreflightError(f"{where} appeared while it was being created; not followed. Run again") from None
    child = _open_child(fd, name, where)
    st = os.fstat(child)
    if st.st_uid != 0 or st.st_nlink != 2:
        os.close(child)
        raise PreflightError(f"{where} was replaced right after it was created; not handed over. Run again")
    os.fchown(child, uid, gid)
    os.fchmod(child, PRIVATE)
    return child


def walk_notebook_dir(path: Path, home: Path, uid: int, gid: int, *, create: bool = False,
                      create_home: bool = False, private_home: bool = False) -> list[str]:
    """Walk from *home* down to the notebook dir *path* without following symlinks; return what was changed.

    Refuses (PreflightError) a symlink or non-directory on the way, a home or notebook dir that is not the user's,
    a directory in between owned by someone other than root or the user, and one writable by others. With *create*,
    missing directories are made 0700 and owned by uid:gid (the home too with *create_home*); else a missing one
    raises MissingDir. With *private_home*, a home readable by others is tightened to 0700 (only for homes
    hubrunbook created).
    """
    names = [Path(home).name, *parts_below(path, home)]
    done: list[str] = []
    fd = open_root_dir(Path(home).parent)
    where = Path(home).parent
    try:
        for i, name in enumerate(names):
            where = where / name
            try:
                child = _open_child(fd, name, where)
            except MissingDir:
                if not create or (i == 0 and not create_home):
                    raise
                child = _make_child(fd, name, where, uid, gid)
                done.append(f"created {where} (0700)")
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            mine = i == 0 or i == len(names) - 1
            if st.st_uid != uid and (mine or st.st_uid != 0):
                whose = "the home" if i == 0 else "the notebook dir" if mine else "a directory on the way"
                raise PreflightError(f"{where} ({whose}) is owned by {_owner(st.st_uid)}, not by the user (uid {uid}); "
                                     "hubrunbook never hands over a directory that exists: chown it yourself if it "
                                     "should be the user's, or remove it")
            writer = _foreign_writer(st, gid)
            if writer:
                raise PreflightError(f"{where} is {writer}: another user could swap what lies below it. "
                                     f"chmod go-w {where}")
            mode = stat.S_IMODE(st.st_mode)
            if i == 0 and private_home and mode & 0o077:
                os.fchmod(fd, PRIVATE)
                done.append(f"home {where} made private (was {mode:04o})")
    finally:
        os.close(fd)
    return done


def make_notebook_dir(path: Path, home: Path, uid: int, gid: int, *, create_home: bool = True) -> list[str]:
    """Create the notebook dir *path* inside *home* (0700, owned by uid:gid) without following symlinks; keep the
    home private (0700). For users hubrunbook created. Returns what changed; raises PreflightError when unsafe."""
    return walk_notebook_dir(path, home, uid, gid, create=True, create_home=create_home, private_home=True)


def notebook_dir_problem(path: Path, home: Path, uid: int, gid: int) -> str | None:
    """Why *path* is not a safe, usable notebook dir inside *home* ("missing: …" when absent); None when it is.

    Read-only (the same walk as make_notebook_dir, creating nothing).
    """
    try:
        walk_notebook_dir(path, home, uid, gid)
    except MissingDir as exc:
        return f"missing: {exc}"
    except PreflightError as exc:
        return str(exc)
    return None


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def home_mode_note(pw: pwd.struct_passwd) -> str:
    """A note when the home of an existing user is readable by others ('' otherwise). Read-only."""
    try:
        mode = stat.S_IMODE(os.stat(pw.pw_dir).st_mode)
    except OSError:
        return ""
    return f"; its home {pw.pw_dir} is mode {mode:04o}, readable by other users (not changed)" if mode & 0o005 else ""


# --- as the user ---------------------------------------------------------------------------------
PROBE_SCRIPT = 'ls -a -- "$1" >/dev/null && t=$(mktemp -p "$1" .hubrunbook-probe-XXXXXX) && rm -f -- "$t"'


def dir_problem_as_user(path: Path, pw: pwd.struct_passwd, timeout: float = 20) -> str | None:
    """Why the user *pw* cannot enter, list and write *path* (None when it can), found by a process with its uid,
    gid and groups (``setpriv``): what the spawned server meets, not what root sees. Read-only (a probe file is
    created and removed)."""
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not setpriv:
        raise PreflightError("setpriv not found; install util-linux (apt-get install util-linux)")
    proc = run_command([setpriv, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--reset-env", "--",
                        "/bin/sh", "-c", PROBE_SCRIPT, "hubrunbook-probe", str(path)],
                       cwd="/", timeout=timeout, check=False, what=f"notebook dir check as {pw.pw_name}")
    if proc.returncode == 0:
        return None
    why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return f"{pw.pw_name} cannot enter, list and write {path}: {why}"
