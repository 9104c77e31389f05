"""Test prefixes ("sandboxes") under HRB_TEST_ROOT, free loopback ports, and the one way a sandbox is torn down.

A test that needs a prefix asks for the ``sandbox`` fixture (function scope) or, for a module-scoped deployment,
calls :func:`reset_sandbox` and :func:`teardown_sandbox` itself. Teardown stops the sandbox's hub by PID through the
library, removes the users the sandbox's registry recorded (and accounts the hub itself created, named by the test),
and removes the prefix.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_ROOT = Path(os.environ.get("HRB_TEST_ROOT", "/var/tmp/hrb-tests"))  # never under a 0700 dir such as /root; not /tmp: often a small tmpfs (Debian 13, containers)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def port_params(**extra) -> dict:
    """Parameters with three fresh loopback ports, the Node.js hubrunbook installs (never the machine's own: a
    development machine's node on PATH would hide a missing install step on a pristine server) and the hub as a
    managed process (many sandboxes at once cannot share one systemd unit; tests/system covers the unit)."""
    p, h, a = free_ports(3)
    return {"port": p, "hub_port": h, "proxy_api_port": a, "node": "wheel", "service": "process", **extra}


def reset_sandbox(name: str) -> Path:
    """TEST_ROOT/<name>, with whatever an earlier run left there torn down first; not created (runbooks create it)."""
    prefix = TEST_ROOT / name
    if prefix.exists() or prefix.is_symlink():
        teardown_sandbox(_params_of(prefix))
    return prefix


def teardown_sandbox(params, *, hub_users: list[str] = ()) -> None:
    """Stop the sandbox's hub by PID, remove the users its registry recorded and *hub_users* (accounts the hub
    created itself, e.g. OAuth's create_system_users; hrb- names only), remove the prefix. Every part is tried;
    afterwards an AssertionError names what could not be cleaned up."""
    from hubrunbook.host import ports, users
    from hubrunbook.host.process import terminate
    from hubrunbook.hub.service import stop_managed_hub

    assert all(name.startswith("hrb-") for name in hub_users), hub_users  # never anyone else's account
    prefix, problems = Path(params.prefix), []
    try:
        stop_managed_hub(params)
    except Exception as exc:
        problems.append(f"stopping the hub: {exc}")
    for port in (params.port, params.proxy_api_port, params.hub_port):  # a proxy of this prefix that outlived its hub
        for pid in ports.listeners(port):
            if any(str(prefix) in part for part in ports.cmdline(pid)):
                terminate(pid, timeout=5)
    try:
        registry = users.read_registry(params) if params.layout.user_registry.exists() else {}
    except Exception as exc:
        registry, problems = {}, [*problems, f"reading the users registry: {exc}"]
    ours = [name for name, entry in registry.items() if users.is_ours(entry, users.lookup(name))]  # same uid as made
    extra = [name for name in hub_users if name not in registry and users.lookup(name)]
    _kill_processes_of([*ours, *extra])  # servers that outlived the hub; userdel refuses a user with processes
    try:
        if registry:
            users.remove_users(params, list(registry))  # leaves alone a name whose uid changed since
    except Exception as exc:
        problems.append(f"removing users {list(registry)}: {exc}")
    for name in extra:
        subprocess.run(["userdel", "-r", "--", name], capture_output=True)
    problems += [f"user {name} still exists" for name in [*ours, *extra] if users.lookup(name)]
    state = prefix / "state"
    if os.path.ismount(state):  # a test that filled a small filesystem mounted there
        subprocess.run(["umount", "-l", str(state)], capture_output=True)
    if prefix.is_dir() and not prefix.is_symlink():
        os.chmod(prefix, 0o755)  # a test may have locked it down
    shutil.rmtree(prefix, ignore_errors=True)
    problems += [f"{prefix} still exists"] if prefix.exists() else []
    assert not problems, "sandbox teardown left: " + "; ".join(problems)


def _kill_processes_of(names: list[str]) -> None:
    """SIGKILL the processes of these (our test) users, and wait until they are gone."""
    from hubrunbook.host.users import lookup

    uids = {pw.pw_uid for pw in map(lookup, names) if pw}
    for _ in range(3):
        procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]
        if not procs:
            return
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)


def _params_of(prefix: Path):
    """Params enough to tear down *prefix* (its hub pid files, registry, paths); ports are only scanned for leftovers."""
    from hubrunbook.core.params import build_params

    return build_params(port_params(prefix=str(prefix)))


@pytest.fixture
def sandbox(request):
    """A prefix path for one test, not yet created; afterwards its hub is stopped, its users removed, it is removed."""
    prefix = reset_sandbox(f"sb-{request.node.name[:40]}-{os.getpid()}")
    yield prefix
    teardown_sandbox(_params_of(prefix))


def ensure_shared_install():
    """Params of TEST_ROOT/shared with node, proxy, hub env and user env installed (kept across runs: converged, it is
    quick)."""
    from hubrunbook.core.params import build_params
    from hubrunbook.hub.hubenv import ensure_hub_env
    from hubrunbook.hub.node import ensure_node
    from hubrunbook.hub.proxy import ensure_proxy
    from hubrunbook.userenv.build import ensure_user_env

    params = build_params(port_params(prefix=str(TEST_ROOT / "shared")))
    for step in (ensure_node, ensure_proxy, ensure_hub_env, ensure_user_env):
        step(params)
    return params


@pytest.fixture(scope="session")
def shared_install():
    """The shared install (ensure_shared_install), once per session."""
    return ensure_shared_install()


def _default_deployment_state() -> tuple:
    """What a test could change of the default deployment (the local default's prefix and port)."""
    from hubrunbook.core.params import Params
    from hubrunbook.host.ports import listeners

    default = Params()
    audit = default.layout.audit_log
    return default.layout.root.exists(), audit.stat().st_size if audit.exists() else None, sorted(listeners(default.port))


@pytest.fixture(scope="session", autouse=True)
def default_deployment_untouched():
    """No test may deploy to the local default (/opt/hubrunbook, port 8000): every test names its own prefix and
    ports. A runbook that silently fell back to its defaults would otherwise install and start a hub there."""
    before = _default_deployment_state()
    yield
    after = _default_deployment_state()
    assert after == before, (f"the test run changed the default deployment ({before} → {after}): some runbook ran "
                             "with the local default instead of its test parameters")
