"""The one sandbox teardown (support.sandbox): what it removes, and what it leaves alone."""
from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from support.sandbox import port_params, reset_sandbox, teardown_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="creates system users")]


def test_teardown_removes_the_registry_users_and_their_processes_and_leaves_others_alone():
    from hubrunbook.core.params import build_params
    from hubrunbook.host.users import ensure_users, lookup

    tag = os.getpid()
    ours, foreign = f"hrb-sbt{tag}-u", f"hrb-sbt{tag}-f"
    prefix = reset_sandbox(f"sbt-{tag}")
    params = build_params(port_params(prefix=str(prefix), users=[ours], admin_users=[]))
    subprocess.run(["useradd", "--no-create-home", "--", foreign], check=True)  # not made by hubrunbook
    leftover = None
    try:
        assert ensure_users(params).status == "changed"
        leftover = subprocess.Popen(["runuser", "-u", ours, "--", "sleep", "300"])  # a server that outlived its hub
        uid = lookup(ours).pw_uid
        for _ in range(50):
            if any(p.info["uids"] and p.info["uids"].real == uid for p in psutil.process_iter(["uids"])):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no process of {ours} started")

        teardown_sandbox(params)

        assert lookup(ours) is None and not os.path.exists(f"/home/{ours}")
        assert leftover.wait(10) is not None
        assert not prefix.exists()
        assert lookup(foreign) is not None, "a user the registry does not name was removed"
        with pytest.raises(AssertionError):
            teardown_sandbox(params, hub_users=["root"])  # only hrb- accounts, ever
        assert lookup("root") is not None
    finally:  # whatever teardown_sandbox failed to clean (only what this test made)
        subprocess.run(["userdel", "--", foreign], capture_output=True)
        if lookup(ours):
            mine = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == lookup(ours).pw_uid]
            for proc in mine:
                proc.kill()
            psutil.wait_procs(mine, timeout=10)
            subprocess.run(["userdel", "-r", "--", ours], capture_output=True)
        if leftover is not None:
            leftover.wait(10)  # runuser ends with its child
