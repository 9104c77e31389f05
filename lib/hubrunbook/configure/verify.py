"""The last section of configure.ipynb: verify the running hub the way users meet it."""
from __future__ import annotations

from hubrunbook.host import homes
from hubrunbook.core.errors import RunbookError, VerificationError
from hubrunbook.hub.probe import check_verification
from hubrunbook.core.steps import FAILED, OK, SKIPPED, StepResult
from hubrunbook.host.throwaway import temporary_outsider
from hubrunbook.host.users import lookup, managed_names, notebook_dir_for, user_password


def check_local_deployment(params, *, dry_run: bool = False) -> StepResult:
    """Log in as the first user and admin, spawn, write a file as the user, list users as admin, check refusals; then,
    as each user (its uid, not root), enter, list and write its notebook dir.

    Only the first user and the admin log in and spawn (a spawn takes seconds; every user at once would load the
    machine like a class starting): the spawn path is the same for all, what differs per user is the notebook dir.
    Side effects: a throwaway outsider user exists for the duration of the check (recorded, swept after a crash);
    servers the probe starts are stopped; each notebook dir gets a probe file, removed at once.
    """
    if dry_run:
        return StepResult("check_local_deployment", SKIPPED, "dry run: the hub was not changed, so nothing to verify")
    user, admin = _verifiable(params, params.users), _verifiable(params, params.admin_users)
    if not user or not admin:
        raise VerificationError(
            "verification needs a user and an admin whose passwords are known: created by this runbook, "
            "or with an entry in passwords (a pre-existing user's password is not ours to know)")
    with temporary_outsider(params) as outsider:
        result = check_verification(params, user=user, password=user_password(params, user), admin=admin,
                                    admin_password=user_password(params, admin), outsider=outsider)
    rows = [(label, status, detail.replace(outsider[0], "hrb-outsider-*")) for label, status, detail in result.rows]
    rows += [notebook_dir_row(params, name) for name in managed_names(params)]
    failed = [r[0] for r in rows if r[1] == FAILED]
    if failed:
        return StepResult("check_local_deployment", FAILED, f"{len(failed)} check(s) failed: {', '.join(failed)}", rows)
    return StepResult("check_local_deployment", OK, result.detail + f"; {len(rows) - len(result.rows)} user(s) use "
                      "their notebook dirs as themselves", rows)


def notebook_dir_row(params, name: str) -> tuple[str, str, str]:
    """Check, as the user *name*, that it can enter, list and write its notebook dir; a table row. Read-only."""
    label = f"{name} uses its notebook dir (as {name})"
    path = notebook_dir_for(params, name)
    pw = lookup(name)
    if pw is None:
        return label, FAILED, f"{name} has no system account"
    try:
        problem = homes.dir_problem_as_user(path, pw)
    except RunbookError as exc:
        problem = str(exc)
    return (label, FAILED, problem) if problem else (label, OK, f"{path}: entered, listed, file written and removed")


def _verifiable(params, names) -> str | None:
    """First of *names* whose password we know: one we created, or one with a passwords entry."""
    from hubrunbook.host.users import read_registry

    ours = read_registry(params)
    return next((n for n in names if n in ours or n in params.passwords), None)


def login_instructions(params) -> StepResult:
    """How to log in: URL and where each user's password lives (never the password itself). Read-only."""
    from hubrunbook.host.users import password_file

    rows = []
    for user in dict.fromkeys([*params.users, *params.admin_users]):
        ref = params.passwords.get(user)
        where = ref if ref else f"sudo cat {password_file(params, user)}"
        rows.append((user, "admin" if user in params.admin_users else "user", where))
    return StepResult("login_instructions", "ok", f"open {params.public_url}/hub/login", rows, ("user", "role", "password"))
