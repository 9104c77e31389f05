"""What the system scenarios do to a booted pristine server: the README's commands inside, a user's HTTP from here."""
from __future__ import annotations

import os
import shutil
import socket
import time

import psutil
import pytest
import requests

from hubrunbook.hub import probe

URL = "http://127.0.0.1:8000"  # parameters/local.yaml: the README's embedded default
UNIT = "jupyterhub.service"
DEFAULT_PORTS = (8000, 8001, 8081)


def require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("system tests boot containers: run as root")
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install debootstrap systemd-container (.ci/run does)")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def require_default_ports() -> None:
    busy = [p for p in DEFAULT_PORTS if not port_free(p)]
    assert not busy, f"ports {busy} are busy on this host; the containers share its network and deploy on the defaults"


def make_deploy(box, umask: str = "") -> str:
    """`make deploy` in the clone, as the README says (in a shell with *umask*, if given); its output (fails the test
    when it fails)."""
    t0 = time.monotonic()
    shell = f"umask {umask} && " if umask else ""
    proc = box.run(f"{shell}cd /root/hubrunbook && make deploy 2>&1", check=False, timeout=1800)
    print(f"[{box.name}] make deploy: {time.monotonic() - t0:.1f} s\n{proc.stdout[-2500:]}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def demo_password(box) -> str:
    return box.path("/opt/hubrunbook/secrets/passwords/demo").read_text().strip()


def unit_show(box, *props: str) -> dict[str, str]:
    out = box.run(f"systemctl show {UNIT} --property {','.join(props)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_hub(timeout: float) -> float:
    """Seconds until GET /hub/api answers 200 JSON on the public URL (fails the test after *timeout*)."""
    t0 = time.monotonic()
    last = "nothing"
    while time.monotonic() - t0 < timeout:
        try:
            r = requests.get(f"{URL}/hub/api", timeout=2)
            if r.status_code == 200 and "version" in r.json():
                return time.monotonic() - t0
            last = f"HTTP {r.status_code}"
        except (requests.RequestException, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    pytest.fail(f"the hub did not answer {URL}/hub/api within {timeout} s (last: {last})")


def login_and_spawn(password: str) -> requests.Session:
    """Log in as demo, start the server, open it through the proxy as a browser does (OAuth with the hub included),
    ask its API as the user, stop it again."""
    session = probe.login(URL, "demo", password)
    probe.start_server(session, URL, "demo", timeout=120)
    probe.open_user_server(session, URL, "demo")
    status = session.get(f"{URL}/user/demo/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), status.text[:300]
    probe.stop_server(session, URL, "demo")
    return session


def host_pid(box, inside_pid: int) -> int:
    """The host PID of the process the container knows as *inside_pid* (the last NSpid field)."""
    for proc in psutil.Process(box.leader).children(recursive=True):
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                nspid = next((line.split()[1:] for line in fh if line.startswith("NSpid:")), [])
        except OSError:
            continue
        if nspid and int(nspid[-1]) == inside_pid:
            return proc.pid
    raise AssertionError(f"no process with pid {inside_pid} inside {box.name}")


def proxy_executable(box) -> str:
    """The executable of the process named in the hub's proxy pid file (seen from the host)."""
    pid = int(box.path("/opt/hubrunbook/state/jupyterhub-proxy.pid").read_text().strip())
    return os.readlink(f"/proc/{host_pid(box, pid)}/exe")
