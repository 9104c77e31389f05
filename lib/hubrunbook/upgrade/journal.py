"""The upgrade's journal, <prefix>/state/upgrade.json (0600): where an upgrade is, so that any later step, a re-run
or troubleshoot knows what to undo.

Phases, in order: ``building`` (env.new / proxy.new being built; the live hub untouched) → ``built`` →
``switching`` (the hub stopped, the database copied, the envs being renamed, upgrade-db, the restart) →
``switched`` (the new hub runs) → ``done`` (verified; env.prev removed). A failure records ``failed`` with the
stage and the cause; the rollback then records ``rolled-back`` (or ``rollback-failed``). ``from`` and ``to`` are the
versions {jupyterhub, jupyterlab, oauthenticator, proxy} before and after; ``swapped`` what was renamed.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from hubrunbook.core import secretref

FINISHED = ("done", "rolled-back")          # nothing left to do
BEFORE_SWITCH = ("backed-up", "building", "built")       # the live env, proxy and database were never touched


def read(params) -> dict:
    """The journal, or {} when no upgrade ever ran here."""
    try:
        data = json.loads(params.layout.upgrade_record.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"phase": "unreadable"}
    return data if isinstance(data, dict) else {"phase": "unreadable"}


def write(params, data: dict) -> dict:
    """Replace the journal (0600, in the 0700 state dir) with *data* stamped with the time; return it."""
    data = {**data, "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    state = params.layout.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    secretref.write_private(params.layout.upgrade_record, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def update(params, **changes) -> dict:
    return write(params, {**read(params), **changes})


def interrupted(journal: dict) -> bool:
    """An upgrade stopped after it began to touch the live hub (stopped it, renamed an env, changed the database)
    and was not rolled back: the hub may run a half-upgraded env."""
    phase = journal.get("phase")
    if not phase or phase in FINISHED or phase in BEFORE_SWITCH:
        return False
    if phase == "failed":
        return bool(journal.get("switch_started"))
    return True


def versions_text(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v)
