"""The last section of configure.ipynb: verify the running hub the way users meet it."""
from __future__ import annotations

import contextlib
import secrets

from . import secretref
from .errors import VerificationError
from .probe import check_verification
from .shell import run_command
from .steps import SKIPPED, StepResult
from .users import lookup, user_password


@contextlib.contextmanager
def temporary_outsider():
    """A throwaway system user outside the allow list, with a random password; removed afterwards."""
    name = f"hrb-outsider-{secrets.token_hex(3)}"
    password = secretref.register(secrets.token_urlsafe(16))
    run_command(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--", name], timeout=30, what="useradd outsider")
    try:
        run_command(["chpasswd"], input=f"{name}:{password}\n", timeout=30, what="chpasswd outsider")
        yield name, password
    finally:
        if lookup(name):
            run_command(["userdel", "--", name], timeout=30, check=False, what="userdel outsider")


def check_local_deployment(params, *, dry_run: bool = False) -> StepResult:
    """Log in as the first user and admin, spawn, write a file as the user, list users as admin, check refusals.

    Side effects: a throwaway outsider user exists for the duration of the check; servers the probe starts are stopped.
    """
    if dry_run:
        return StepResult("check_local_deployment", SKIPPED, "dry run: the hub was not changed, so nothing to verify")
    user, admin = _verifiable(params, params.users), _verifiable(params, params.admin_users)
    if not user or not admin:
        raise VerificationError(
            "verification needs a user and an admin whose passwords are known: created by this runbook, "
            "or with an entry in passwords (a pre-existing user's password is not ours to know)")
    with temporary_outsider() as outsider:
        result = check_verification(params, user=user, password=user_password(params, user), admin=admin,
                                    admin_password=user_password(params, admin), outsider=outsider)
    result.step = "check_local_deployment"
    result.rows = [(label, status, detail.replace(outsider[0], "hrb-outsider-*")) for label, status, detail in result.rows]
    return result


def _verifiable(params, names) -> str | None:
    """First of *names* whose password we know: one we created, or one with a passwords entry."""
    from .users import read_registry

    ours = read_registry(params)
    return next((n for n in names if n in ours or n in params.passwords), None)


def login_instructions(params) -> StepResult:
    """How to log in: URL and where each user's password lives (never the password itself). Read-only."""
    from .users import password_file

    rows = []
    for user in dict.fromkeys([*params.users, *params.admin_users]):
        ref = params.passwords.get(user)
        where = ref if ref else f"sudo cat {password_file(params, user)}"
        rows.append((user, "admin" if user in params.admin_users else "user", where))
    return StepResult("login_instructions", "ok", f"open {params.public_url}/hub/login", rows, ("user", "role", "password"))
