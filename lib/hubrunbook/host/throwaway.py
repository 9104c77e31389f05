"""Throwaway system accounts (the outsider verification logs in as): recorded before they exist, swept after a crash.

A run killed mid-way (``kill -9`` of the kernel) never reaches the ``finally`` that deletes its outsider. So the
account is written to ``<state_dir>/throwaway-users.json`` (0600) with the uid it will get *before* ``useradd
--uid`` runs, and the next run deletes what the record names — only accounts whose name and uid both match the
record, so an account someone else made with that name since is left alone.
"""
from __future__ import annotations

import contextlib
import pwd
import secrets
from datetime import datetime, timezone

from hubrunbook.core import records, secretref
from hubrunbook.core.errors import CommandError, PreflightError
from hubrunbook.core.params import login_defs_uid_range
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE


def read_record(params) -> dict[str, dict]:
    """Recorded throwaway accounts: {name: {"uid": int, "created": iso}}; {} when none. Read-only."""
    return records.read_record(params.layout.throwaway_registry, "accounts", what="a hubrunbook record of throwaway accounts",
                               purpose="it lists throwaway accounts to delete")


def _write_record(params, accounts: dict[str, dict]) -> None:
    records.write_record(params.layout.throwaway_registry, "accounts", accounts)


def _free_uid() -> int:
    """A uid in UID_MIN..UID_MAX that no account and no group uses: above the highest in use, as useradd picks (a
    freed lower uid may still own files of a deleted user), else the lowest free one."""
    import grp

    lo, hi = login_defs_uid_range()
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    top = max((u for u in used if lo <= u <= hi), default=lo - 1) + 1
    uid = top if top <= hi else next((u for u in range(lo, hi + 1) if u not in used), None)
    if uid is None:
        raise PreflightError(f"no free uid in UID_MIN..UID_MAX {lo}..{hi} of /etc/login.defs for a throwaway account")
    return uid


def _lookup(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _userdel(name: str) -> None:
    proc = run_command(["userdel", "--", name], timeout=30, check=False, what=f"userdel {name}")
    if _lookup(name) is not None:
        raise CommandError(f"userdel {name} failed (exit {proc.returncode}): {proc.stderr.strip()}; "
                           f"stop its processes and delete it by hand (userdel {name})")


def sweep_throwaway_accounts(params, *, dry_run: bool = False) -> list[tuple[str, str, str]]:
    """Delete the throwaway accounts an interrupted run left (recorded name and uid both match); return table rows.

    Accounts whose uid differs from the record are left alone (the name was reused); their record is dropped.
    """
    accounts = read_record(params)
    rows = []
    for name, entry in sorted(accounts.items()):
        pw, uid = _lookup(name), entry.get("uid")
        if pw is None:
            rows.append((name, UNCHANGED, f"throwaway account of an interrupted run (uid {uid}): already gone"))
        elif pw.pw_uid != uid:
            rows.append((name, UNCHANGED, f"uid {pw.pw_uid} is not the recorded uid {uid}: not ours, left alone"))
        elif dry_run:
            rows.append((name, WOULD_CHANGE, f"would delete the throwaway account an interrupted run left (uid {uid})"))
            continue
        else:
            _userdel(name)
            rows.append((name, CHANGED, f"deleted the throwaway account an interrupted run left (uid {uid})"))
        if not dry_run:
            del accounts[name]
            _write_record(params, accounts)
    return rows


@contextlib.contextmanager
def temporary_outsider(params):
    """A throwaway system user (no home, nologin) with a random password; recorded before it exists, deleted after.

    Yields (name, password). Leftovers of an interrupted run are swept first.
    """
    sweep_throwaway_accounts(params)
    name = f"hrb-outsider-{secrets.token_hex(3)}"
    password = secretref.register(secrets.token_urlsafe(16))
    uid = _free_uid()
    accounts = read_record(params)
    accounts[name] = {"uid": uid, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_record(params, accounts)
    try:
        run_command(["useradd", "--no-create-home", "--uid", str(uid), "--shell", "/usr/sbin/nologin", "--", name],
                    timeout=30, what="useradd outsider")
        run_command(["chpasswd"], input=f"{name}:{password}\n", timeout=30, what="chpasswd outsider")
        yield name, password
    finally:
        sweep_throwaway_accounts(params)
