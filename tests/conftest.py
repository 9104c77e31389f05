"""Shared fixtures: free ports, test prefixes, one installed hub env shared by the integration tests."""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_ROOT = Path(os.environ.get("HRB_TEST_ROOT", "/var/tmp/hrb-tests"))  # never under a 0700 dir such as /root; not /tmp: often a small tmpfs (Debian 13, containers)
sys.path.insert(0, str(REPO / "tests"))


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


@pytest.fixture(scope="session")
def shared_install():
    """Params of a prefix with node, proxy and hub env installed (built once per session, reused across runs)."""
    from hubrunbook.hub.hubenv import ensure_hub_env
    from hubrunbook.hub.node import ensure_node
    from hubrunbook.core.params import build_params
    from hubrunbook.hub.proxy import ensure_proxy

    params = build_params(port_params(prefix=str(TEST_ROOT / "shared")))
    for step in (ensure_node, ensure_proxy, ensure_hub_env):
        step(params)
    return params


@pytest.fixture
def sandbox(request):
    """A fresh, empty prefix directory for one test (removed afterwards)."""
    path = TEST_ROOT / f"sb-{request.node.name[:40]}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def deploy(shared_install, request):
    """Build working deployments on the shared install (tests/ts_support.Deployment); torn down afterwards."""
    from ts_support import Deployment

    made = []

    def make(name: str | None = None, **kw):
        d = Deployment(shared_install, name or request.node.name[5:40], **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.teardown()
