"""Start, watch and stop a JupyterHub process and its proxy, by recorded PIDs only."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from hubrunbook.host import ports
from hubrunbook.core.errors import HubError
from hubrunbook.hub.tls import http_session


@dataclass
class HubProcess:
    pid: int
    proxy_pid_file: Path
    log_file: Path

    def proxy_pid(self) -> int | None:
        return read_pid(self.proxy_pid_file)


def read_pid(path: Path) -> int | None:
    """PID stored in *path*, or None when absent, unreadable, or the process is gone."""
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


def started_before_record(pid: int, record: Path, slack: float = 1.0) -> bool:
    """Whether *pid* started before *record* (its pid file) was last written, as a process named in a pid file must:
    one that started later got a recycled PID. False when either cannot be read. Read-only."""
    try:
        return psutil.Process(pid).create_time() <= Path(record).stat().st_mtime + slack
    except (psutil.Error, OSError):
        return False


# what a hub and its proxy get from the environment of the run that starts them: locale, time zone, identity, the
# outbound HTTP proxy and CA bundle settings (an OAuth hub must reach its provider); nothing else the operator's
# shell holds (cloud keys, tokens). A systemd unit starts from systemd's own clean environment.
PASSED_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "SHELL", "http_proxy", "https_proxy",
                        "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
                        "REQUESTS_CA_BUNDLE"})


def hub_process_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a hub process: the allow-listed part of ours (PASSED_ENV, LC_*), then *extra*."""
    return {**{k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}, **extra}


def start_hub(argv: list[str], *, cwd: Path, log_file: Path, env: dict[str, str], proxy_pid_file: Path) -> HubProcess:
    """Start *argv* (a jupyterhub command) detached, output to *log_file*, with the allow-listed environment
    (hub_process_env) plus *env*. Not idempotent: callers check first."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=hub_process_env(env), start_new_session=True,
        )
    finally:
        os.close(fd)
    return HubProcess(proc.pid, proxy_pid_file, log_file)


def hub_api_ok(url: str, timeout: float = 3) -> tuple[bool, str]:
    """GET <url>/hub/api: (True, version) on 200 JSON, else (False, what was seen)."""
    try:
        resp = http_session(url).get(f"{url}/hub/api", timeout=timeout)
    except requests.RequestException as exc:
        return False, f"no answer ({type(exc).__name__})"
    if resp.status_code != 200:
        return False, f"HTTP {resp.status_code}"
    try:
        return True, str(resp.json().get("version", "?"))
    except ValueError:
        return False, "200 but not JSON (another server on this port?)"


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_hub_ready(hub: HubProcess, url: str, public_port: int, timeout: float) -> str:
    """Poll until /hub/api answers 200 JSON and the proxy owns *public_port*; return the hub version.

    Raises HubError (with the log tail) when the hub exits or *timeout* passes.
    """
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while time.monotonic() < deadline:
        if not _alive(hub.pid):
            raise HubError(f"the hub (pid {hub.pid}) exited while starting. Log {hub.log_file}:\n{log_tail(hub.log_file)}")
        ok, seen = hub_api_ok(url)
        if ok:
            proxy = hub.proxy_pid()
            owners = ports.listeners(public_port)
            if proxy and proxy in owners:
                return seen
            if owners and proxy and proxy not in owners:
                raise HubError(
                    f"port {public_port} is held by {', '.join(ports.describe(p) for p in owners)}, not by our proxy "
                    f"(pid {proxy}); users would reach that process. Stop it or choose another port."
                )
            seen = f"hub answers but the proxy does not own port {public_port} yet"
        time.sleep(0.1)
    raise HubError(
        f"the hub did not become ready within {timeout:g} s (waiting for {url}/hub/api → 200 JSON and the proxy "
        f"on port {public_port}; last seen: {seen}). Log {hub.log_file}:\n{log_tail(hub.log_file)}"
    )


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate(pid: int, timeout: float = 15) -> bool:
    """SIGTERM *pid*, SIGKILL after *timeout*; True when it is gone."""
    if not _alive(pid):
        _reap(pid)
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.2)
    _reap(pid)
    return not _alive(pid)


def stop_hub(hub_pid: int | None, proxy_pid: int | None, timeout: float = 20) -> list[str]:
    """Stop the hub, then its proxy if it survived (only if it is really configurable-http-proxy). Returns what was done."""
    done = []
    if hub_pid and _alive(hub_pid):
        terminate(hub_pid, timeout)
        done.append(f"stopped hub pid {hub_pid}")
    if proxy_pid and _alive(proxy_pid):
        # the hub normally stops its proxy; give it a moment before acting ourselves
        deadline = time.monotonic() + 5
        while _alive(proxy_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(proxy_pid):
            if not ports.is_proxy(proxy_pid):
                raise HubError(f"pid {proxy_pid} from the proxy pid file is not configurable-http-proxy; left alone")
            terminate(proxy_pid, timeout)
            done.append(f"stopped proxy pid {proxy_pid}")
    return done
