"""upgrade.ipynb's steps: plan, backup, build next to the live hub, switch, verify — and roll back on any failure.

The live env, proxy and database are touched only by ``ensure_upgrade_switch`` (after the backup and after the new
parts are complete) and the rollback. A step that fails records the cause in the journal (upgrade/journal.py) and
returns a failed result instead of raising, so the notebook goes on to ``ensure_upgrade_verified``, which rolls back
whatever was switched, restarts the previous hub and verifies it, and says so. An upgrade interrupted after the switch
began (the kernel died) is rolled back by ``ensure_upgrade_recovered`` at the start of the next run.
"""
from __future__ import annotations

import os
import time

from hubrunbook.core import secretref
from hubrunbook.core.errors import PreflightError, RunbookError, VerificationError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, FAILED, OK, SKIPPED, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.hub.envfile import read_hub_env
from hubrunbook.hub.service import ensure_hub_running, stop_managed_hub
from hubrunbook.upgrade import journal, parts
from hubrunbook.upgrade.journal import versions_text


def _plan(params) -> tuple[dict, dict, dict]:
    """(installed, wanted, changes). Read-only."""
    have = parts.installed(params)
    want = parts.wanted(params, have)
    return have, want, parts.changes(have, want)


def _cause(exc: BaseException) -> str:
    text = secretref.mask(str(exc)) or type(exc).__name__
    return text.removeprefix("step ").strip()


# --- 1. the plan ----------------------------------------------------------------------------------------------
def check_upgrade_plan(params) -> StepResult:
    """What would change: installed vs wanted versions of jupyterhub, jupyterlab, oauthenticator (when installed) and
    configurable-http-proxy; refuses (before anything changes) a missing install, a downgrade not allowed, a Node.js
    too old for the new proxy and leftovers that are not an upgrade's. Read-only."""
    lay = params.layout
    if not lay.env_marker.exists():
        raise PreflightError(f"no complete hub env at {lay.env_dir}: nothing to upgrade. Run install.ipynb first")
    have, want, todo = _plan(params)
    if have.get("proxy") is None:
        raise PreflightError("configurable-http-proxy is not installed where the parameters say "
                             f"(proxy_install: {params.proxy_install!r}); run install.ipynb first")
    j = journal.read(params)
    leftovers = [str(p) for p in (lay.env_new_dir, lay.env_prev_dir, lay.proxy_new_dir, lay.proxy_prev_dir)
                 if p.exists() or p.is_symlink()]
    if leftovers and not j:
        raise PreflightError(f"{', '.join(leftovers)} exist(s) but no upgrade journal ({lay.upgrade_record}) says an "
                             "upgrade made them: not ours to remove. Move them away and run again")
    down = [f"{p} {a} → {b}" for p, (a, b) in todo.items() if parts.older(a, b)]
    if down and not params.allow_downgrade:
        raise PreflightError(f"these would be downgrades: {', '.join(down)}. Set the versions you have or newer, or "
                             "allow_downgrade: true (JupyterHub never across a database schema change)")
    if "proxy" in todo:
        from hubrunbook.hub.node import choose_node

        try:
            choose_node(params)
        except RunbookError as exc:
            raise PreflightError(f"configurable-http-proxy {params.proxy_version} needs a newer Node.js: {_cause(exc)}. "
                                 "Run install.ipynb with the new proxy_version first (ensure_node)") from None
    if todo:
        _check_verifiable(params)
    rows = [(p, have.get(p) or "not installed", want.get(p) or "—",
             ("downgrade" if parts.older(have.get(p), want.get(p)) else "upgrade") if p in todo else "unchanged")
            for p in parts.PARTS if have.get(p) or want.get(p)]
    header = ("part", "installed", "wanted", "action")
    note = ""
    if journal.interrupted(j):
        note = f"; an upgrade interrupted at {j.get('phase')} is rolled back first (ensure_upgrade_recovered)"
    if not todo:
        return StepResult("check_upgrade_plan", OK, f"nothing to upgrade: {versions_text(have)}{note}", rows, header)
    how = ("a new env built at " + str(lay.env_new_dir) if parts.env_changes(todo) else "the env kept") + (
        ", the proxy " + ("built at " + str(lay.proxy_new_dir) if params.proxy_install == "private" else "upgraded in npm's global prefix")
        if "proxy" in todo else "")
    return StepResult("check_upgrade_plan", OK, f"{len(todo)} part(s) to change: "
                      + ", ".join(f"{p} {a or '—'} → {b}" for p, (a, b) in todo.items()) + f" ({how}){note}", rows, header)


def _check_verifiable(params) -> None:
    """Refuse (before anything changes) an upgrade whose result could not be verified: the verification logs in
    through the login form as a user and an admin whose passwords are known (configure.ipynb's check)."""
    from hubrunbook.configure.verify import _verifiable
    from hubrunbook.hub import hubguard
    from hubrunbook.hub.configload import load_config

    auth = load_config(params, ["c.JupyterHub.authenticator_class"]).values.get("c.JupyterHub.authenticator_class")
    if auth not in (hubguard.PAM_CLASS, "pam", "jupyterhub.auth.PAMAuthenticator", None):
        raise PreflightError(f"the hub logs users in with {auth}: upgrade.ipynb verifies an upgrade (and its rollback) by "
                             "a local password login and spawn, which that authenticator does not offer. Upgrade this "
                             "hub by hand, or switch it to PAM logins for the upgrade")
    if not _verifiable(params, params.users) or not _verifiable(params, params.admin_users):
        raise PreflightError("the verification after the upgrade needs a user and an admin whose passwords are known "
                             "(created by configure.ipynb, or with an entry in passwords): set users and admin_users as "
                             "for configure.ipynb")


# --- 2. an upgrade interrupted earlier ----------------------------------------------------------------------------
def ensure_upgrade_recovered(params, *, dry_run: bool = False) -> StepResult:
    """Roll back an earlier upgrade that stopped after the switch began (its journal says so): the previous env,
    proxy and database back, the hub restarted and verified. Unchanged when there is none."""
    j = journal.read(params)
    if not journal.interrupted(j):
        return StepResult("ensure_upgrade_recovered", UNCHANGED, "no interrupted upgrade" + (
            f" (last: {j.get('phase')}, {j.get('updated', '')})" if j else ""))
    if dry_run:
        return StepResult("ensure_upgrade_recovered", WOULD_CHANGE, f"would roll back the upgrade interrupted at "
                          f"{j.get('phase')} to {versions_text(j.get('from', {}))}")
    ok, done = rollback(params, j, cause=f"an earlier upgrade was interrupted at {j.get('phase')}")
    return StepResult("ensure_upgrade_recovered", CHANGED if ok else FAILED, done)


def _still_interrupted(params, name: str) -> StepResult | None:
    """A failed result when an earlier upgrade is still half-done (its rollback failed): nothing more may change."""
    j = journal.read(params)
    if not journal.interrupted(j):
        return None
    return StepResult(name, FAILED, f"an earlier upgrade is still half-done ({j.get('phase')}; see "
                      "ensure_upgrade_recovered): nothing more is changed until it is resolved")


# --- 3. the backup ------------------------------------------------------------------------------------------------
def ensure_upgrade_backup(params, *, dry_run: bool = False) -> StepResult:
    """Before an upgrade changes anything: a backup archive (backup.ipynb's, with the hub running). With nothing to
    upgrade, none is taken (a converged run changes nothing)."""
    have, want, todo = _plan(params)
    if not todo:
        return StepResult("ensure_upgrade_backup", UNCHANGED, "nothing to upgrade, no backup needed")
    if not dry_run and (stuck := _still_interrupted(params, "ensure_upgrade_backup")):
        return stuck
    from hubrunbook.backup.archive import ensure_backup

    result = ensure_backup(params, dry_run=dry_run)
    if dry_run or result.failed:
        return StepResult("ensure_upgrade_backup", result.status, result.detail, result.rows, result.header, result.data)
    journal.write(params, {"phase": "backed-up", "previous": journal.read(params).get("phase"), "from": have, "to": want,
                           "backup": str(result.data.get("archive", "")),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return StepResult("ensure_upgrade_backup", result.status, result.detail, result.rows, result.header, result.data)


# --- 4. build next to the live hub ------------------------------------------------------------------------------
def ensure_upgrade_build(params, *, dry_run: bool = False) -> StepResult:
    """Build the new env at env.new (and the proxy at proxy.new) while the hub keeps running on the old ones; learn
    whether the database schema changes. On failure the new parts are removed and nothing else was touched."""
    from hubrunbook.hub.database import db_revision
    from hubrunbook.hub.hubenv import _show_progress

    have, want, todo = _plan(params)
    name = "ensure_upgrade_build"
    if not todo:
        return StepResult(name, UNCHANGED, f"nothing to build: {versions_text(have)}")
    lay = params.layout
    if dry_run:
        what = [f"a hub env at {lay.env_new_dir} with " + versions_text({p: want[p] for p in parts.PYTHON_PARTS})
                ] if parts.env_changes(todo) else []
        what += [f"configurable-http-proxy {want['proxy']} at {lay.proxy_new_dir}"] if "proxy" in todo and params.proxy_install == "private" else []
        return StepResult(name, WOULD_CHANGE, "would build " + ("; ".join(what) or "nothing (global proxy: upgraded at the switch)"))
    if stuck := _still_interrupted(params, name):
        return stuck
    j = journal.read(params)
    if j.get("phase") != "backed-up" or j.get("to") != want:
        return _fail_before_switch(params, name, "no backup of this upgrade was taken (ensure_upgrade_backup must run "
                                   "first, in the same run)", have, want)
    t0 = time.monotonic()
    journal.update(params, phase="building")
    built = []
    try:
        parts.remove_built(params)  # a build an earlier failed run left
        stale = [p for p in (lay.env_prev_dir, lay.proxy_prev_dir) if p.exists() or p.is_symlink()]
        if stale and j.get("previous") != "done":
            raise PreflightError(f"{', '.join(map(str, stale))} exist(s) and no finished upgrade accounts for them: "
                                 "move them away")
        for path in stale:  # a verified upgrade's previous parts whose removal did not happen
            parts.remove_tree(path)
        if parts.env_changes(todo):
            print(f"building {lay.env_new_dir} (the hub keeps running on {lay.env_dir}) …")
            built.append(parts.build_env(params, want, progress=_show_progress))
        if "proxy" in todo and params.proxy_install == "private":
            built.append(parts.build_proxy(params, want["proxy"]))
        env = lay.env_new_dir if parts.env_changes(todo) else lay.env_dir
        rev_from = db_revision(lay.hub_db) if lay.hub_db.exists() else None
        rev_to = parts.schema_head(env)
        if rev_from and rev_from != rev_to and parts.older(have["jupyterhub"], want["jupyterhub"]):
            raise PreflightError(f"jupyterhub {want['jupyterhub']} uses database schema {rev_to}, the database is at "
                                 f"{rev_from} (newer): an older JupyterHub cannot downgrade it")
    except Exception as exc:  # noqa: BLE001 - any failure: remove what was built, nothing else changed
        return _fail_before_switch(params, name, _cause(exc), have, want)
    journal.update(params, phase="built", schema_from=rev_from, schema_to=rev_to)
    schema = (f"database schema {rev_from} → {rev_to}: upgrade-db will run" if rev_from and rev_from != rev_to
              else f"database schema unchanged ({rev_to})")
    return StepResult(name, CHANGED, f"built {'; '.join(built) or 'nothing (global proxy: upgraded at the switch)'}; "
                      f"{schema} ({time.monotonic() - t0:.0f} s; the hub still runs {versions_text(have)})")


def _fail_before_switch(params, name: str, cause: str, have: dict, want: dict) -> StepResult:
    try:
        parts.remove_built(params)
    except Exception as exc:  # noqa: BLE001
        cause += f"; and removing the partial build failed: {_cause(exc)}"
    journal.update(params, phase="failed", stage="build", cause=cause, switch_started=False, **{"from": have, "to": want})
    return StepResult(name, FAILED, f"{cause} — nothing was switched: the hub still runs {versions_text(have)}")


# --- 5. the switch ------------------------------------------------------------------------------------------------
def ensure_upgrade_switch(params, *, dry_run: bool = False) -> StepResult:
    """Stop the hub, copy its database, swap env.new → env (env → env.prev) and the proxy, run `jupyterhub
    upgrade-db` when the schema changes, start the hub. A failure is recorded for ensure_upgrade_verified's rollback."""
    name = "ensure_upgrade_switch"
    have, want, todo = _plan(params)
    j = journal.read(params)
    if dry_run:
        return StepResult(name, WOULD_CHANGE if todo else UNCHANGED,
                          "would stop the hub, copy its database, swap in the new parts, run upgrade-db if the schema "
                          "changes and start the hub" if todo else f"nothing to switch: {versions_text(have)}")
    if todo and j.get("phase") == "failed" and not j.get("switch_started"):
        return StepResult(name, SKIPPED, f"the {j.get('stage', 'build')} failed; nothing to switch")
    if j.get("phase") != "built":
        return StepResult(name, UNCHANGED, f"nothing to switch: {versions_text(have)}")
    lay = params.layout
    journal.update(params, phase="switching", switch_started=True, swapped=[], db_copied=False, db_upgraded=False)
    done = []
    try:
        stop = stop_managed_hub(params)
        done.append(stop.detail if stop.status == CHANGED else "hub was not running")
        if lay.hub_db.exists():
            from hubrunbook.hub.database import copy_database

            lay.upgrade_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(lay.upgrade_dir, 0o700)
            copy_database(lay.hub_db, lay.upgrade_db_copy)
            os.chmod(lay.upgrade_db_copy, 0o600)
            journal.update(params, db_copied=True)
            done.append(f"database copied to {lay.upgrade_db_copy}")
        swapped = []
        if lay.env_new_dir.exists():
            journal.update(params, swapping="env")  # from here the rollback looks at env/env.new/env.prev
            parts.swap_in(lay.env_dir, lay.env_new_dir, lay.env_prev_dir)
            swapped.append("env")
            journal.update(params, swapped=swapped)
            n = parts.retarget(lay.env_dir, lay.env_new_dir)
            done.append(f"env.new → env ({n} script(s) retargeted), env → env.prev")
        if lay.proxy_new_dir.exists():
            journal.update(params, swapping="proxy")
            parts.swap_in(lay.proxy_dir, lay.proxy_new_dir, lay.proxy_prev_dir)
            swapped.append("proxy")
            journal.update(params, swapped=swapped)
            done.append("proxy.new → proxy, proxy → proxy.prev")
        elif "proxy" in todo and params.proxy_install == "global":
            swapped.append("proxy-global")
            journal.update(params, swapped=swapped)
            parts.npm_install_proxy(params, want["proxy"], None)
            done.append(f"configurable-http-proxy {want['proxy']} installed globally")
        if j.get("schema_from") and j.get("schema_from") != j.get("schema_to"):
            out = upgrade_db(params)
            from hubrunbook.hub.database import db_revision

            now = db_revision(lay.hub_db)
            journal.update(params, db_upgraded=True)
            if now != j.get("schema_to"):
                raise RunbookError(f"jupyterhub upgrade-db left the database at {now}, not {j.get('schema_to')}: "
                                   f"{out.stdout[-300:]}")
            done.append(f"upgrade-db: schema {j['schema_from']} → {now}")
        started = ensure_hub_running(params)
        done.append(started.detail)
    except Exception as exc:  # noqa: BLE001 - any failure: the rollback (next step) undoes what the journal lists
        cause = _cause(exc)
        journal.update(params, phase="failed", stage="switch", cause=cause)
        return StepResult(name, FAILED, f"switching to {versions_text(want)} failed: {cause} (done before: "
                          f"{'; '.join(done) or 'nothing'}); ensure_upgrade_verified rolls it back")
    journal.update(params, phase="switched")
    return StepResult(name, CHANGED, "; ".join(done), data={"versions": parts.installed(params)})


def upgrade_db(params):
    """`jupyterhub upgrade-db` of the (new) live env on our config, with hub.env and the env's bin/ first on PATH (it
    runs `alembic` by name). JupyterHub's own timestamped copy of the sqlite file is removed: the backup archive and
    state/upgrade/ hold the database as it was."""
    lay = params.layout
    before = set(lay.state_dir.glob(f"{lay.hub_db.name}.*"))
    env = {**read_hub_env(params), "PATH": f"{lay.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    try:
        return run_command([lay.env_bin("jupyterhub"), "upgrade-db", "-f", params.config_path], timeout=600,
                           cwd=lay.state_dir, env=env, what="jupyterhub upgrade-db")
    finally:
        for extra in set(lay.state_dir.glob(f"{lay.hub_db.name}.*")) - before:
            if extra.is_file() and not extra.is_symlink():
                extra.unlink()


# --- 6. verify, then keep or roll back --------------------------------------------------------------------------
def ensure_upgrade_verified(params, *, dry_run: bool = False) -> StepResult:
    """Verify the upgraded hub the way users meet it (configure.ipynb's check: login, spawn, a file written as the
    user, the admin's user list, refusals). Verified: env.prev and proxy.prev go, the journal says done. Otherwise,
    or when the switch failed: roll back to the previous env, proxy, versions and database, restart, verify that,
    and fail naming the cause and the rollback's outcome."""
    name = "ensure_upgrade_verified"
    j = journal.read(params)
    phase = j.get("phase")
    if dry_run:
        return StepResult(name, SKIPPED, "dry run: nothing was switched, so nothing to verify")
    if phase == "failed" and not j.get("switch_started"):
        return StepResult(name, SKIPPED, f"nothing was switched ({j.get('stage')} failed): the hub runs "
                          f"{versions_text(j.get('from', {}))} as before")
    if journal.interrupted(j) and phase != "switched":
        cause = f"the switch failed: {j.get('cause')}" if phase == "failed" else f"the upgrade stopped at {phase}"
        return StepResult(name, FAILED, f"{cause}; {rollback(params, j, cause=cause)[1]}")
    if phase != "switched":
        have = parts.installed(params)
        return StepResult(name, UNCHANGED, f"no upgrade in progress: {versions_text(have)}")
    try:
        check = verify(params)
        failed = [f"{r[0]}: {r[2]}" for r in check.rows if r[1] == FAILED] if check.failed else []
        problem = "; ".join(failed) or (check.detail if check.failed else "")
    except Exception as exc:  # noqa: BLE001
        check, problem = None, _cause(exc)
    if problem:
        journal.update(params, phase="failed", stage="verify", cause=problem)
        cause = f"{versions_text(j.get('to', {}))} did not pass verification: {problem}"
        return StepResult(name, FAILED, f"{cause}; {rollback(params, journal.read(params), cause=cause)[1]}",
                          check.rows if check else [])
    removed = []
    for path in (params.layout.env_prev_dir, params.layout.proxy_prev_dir, params.layout.upgrade_db_copy):
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
            removed.append(path.name)
        elif path.is_file():
            path.unlink()
            removed.append(path.name)
    have = parts.installed(params)
    journal.update(params, phase="done", verified=True, installed=have)
    return StepResult(name, CHANGED, f"{versions_text(have)} verified ({check.detail}); removed "
                      f"{', '.join(removed) or 'nothing'} (the backup {j.get('backup') or '—'} stays)", check.rows)


def verify(params) -> StepResult:
    """configure.ipynb's verification of the running hub (check_local_deployment)."""
    from hubrunbook.configure.verify import check_local_deployment

    return check_local_deployment(params)


def _was_swapped(j: dict, key: str, live, new) -> bool:
    """Whether the live *key* (env or proxy) is, or may half be, the new one: the journal says it was swapped, or a
    swap of it began and its .new is gone (renamed in) or the live one is gone (renamed away, the new not yet in).
    A .prev the journal does not account for (an earlier upgrade's) is never put back over a good live one."""
    if key in j.get("swapped", []):
        return True
    return j.get("swapping") == key and (not new.exists() or not live.exists())


def rollback(params, j: dict, *, cause: str) -> tuple[bool, str]:
    """Undo what the journal *j* says was switched: stop the hub, the previous env and proxy back, the database
    copied back, start and verify the previous hub. Returns (succeeded, what happened); never raises."""
    lay = params.layout
    done = []
    journal.update(params, phase="rolling-back", cause=cause)
    try:
        stop_managed_hub(params)
        if _was_swapped(j, "env", lay.env_dir, lay.env_new_dir) and parts.swap_back(lay.env_dir, lay.env_prev_dir):
            done.append("env.prev → env")
        if _was_swapped(j, "proxy", lay.proxy_dir, lay.proxy_new_dir) and parts.swap_back(lay.proxy_dir, lay.proxy_prev_dir):
            done.append("proxy.prev → proxy")
        if "proxy-global" in j.get("swapped", []) and j.get("from", {}).get("proxy"):
            parts.npm_install_proxy(params, j["from"]["proxy"], None)
            done.append(f"configurable-http-proxy {j['from']['proxy']} reinstalled globally")
        parts.remove_built(params)
        if j.get("db_copied") and lay.upgrade_db_copy.exists():
            from hubrunbook.hub.database import copy_database

            copy_database(lay.upgrade_db_copy, lay.hub_db)
            done.append("database restored from the copy taken before the switch")
        ensure_hub_running(params)
        have = parts.installed(params)
        check = verify(params)
        if check.failed:
            raise VerificationError(f"the previous hub runs but its verification failed: {check.detail}")
    except Exception as exc:  # noqa: BLE001
        why = _cause(exc)
        journal.update(params, phase="rollback-failed", rollback_cause=why)
        return False, (f"ROLLBACK FAILED: {why} (done: {'; '.join(done) or 'nothing'}). The previous env is "
                       f"{lay.env_prev_dir if lay.env_prev_dir.exists() else lay.env_dir}, the database as it was "
                       f"{lay.upgrade_db_copy}, the backup {j.get('backup') or '—'}: run upgrade.ipynb again "
                       "(ensure_upgrade_recovered retries the rollback) or restore.ipynb with that backup")
    lay.upgrade_db_copy.unlink(missing_ok=True)
    journal.update(params, phase="rolled-back", installed=have)
    return True, (f"rolled back ({'; '.join(done) or 'nothing was swapped'}): the hub runs {versions_text(have)} "
                  f"again, verified: {check.detail}")
