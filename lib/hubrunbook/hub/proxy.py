"""configurable-http-proxy from npm: a pinned version in a private or the global prefix."""
from __future__ import annotations

import json
from pathlib import Path

from hubrunbook.core.errors import CommandError
from hubrunbook.hub.node import choose_node, node_env, npm_command
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

PKG = "configurable-http-proxy"


def npm_prefix(params) -> Path:
    """npm prefix the proxy is installed into."""
    if params.proxy_install == "private":
        return params.layout.proxy_dir
    out = run_command(npm_command(params) + ["prefix", "-g"], timeout=30, env=node_env(params), what="npm prefix -g")
    return Path(out.stdout.strip())


def package_dir(params) -> Path:
    base = npm_prefix(params)
    return base / "node_modules" / PKG if params.proxy_install == "private" else base / "lib" / "node_modules" / PKG


def proxy_command(params) -> list[str]:
    """The proxy command for c.ConfigurableHTTPProxy.command: [real node binary, chp script] (no PATH lookup, no
    launcher in between: the PID the hub records is the process that holds the port)."""
    _, node, _ = choose_node(params)
    return [str(node), str(package_dir(params) / "bin" / PKG)]


def installed_version(params) -> str | None:
    """Version of the installed proxy package from its package.json, or None."""
    try:
        return json.loads((package_dir(params) / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def proxy_runs(params) -> str | None:
    """`configurable-http-proxy --version` output, or None when it does not run."""
    try:
        return run_command(proxy_command(params) + ["--version"], timeout=30, what="configurable-http-proxy --version").stdout.strip()
    except CommandError:
        return None


def ensure_proxy(params, *, dry_run: bool = False) -> StepResult:
    """Install configurable-http-proxy==proxy_version with npm and verify `--version`. Idempotent."""
    want = params.proxy_version
    where = package_dir(params)
    have = installed_version(params)
    if have == want and proxy_runs(params) == want:
        return StepResult("ensure_proxy", UNCHANGED, f"configurable-http-proxy {want} in {where}")
    if dry_run:
        return StepResult("ensure_proxy", WOULD_CHANGE, f"would npm install {PKG}@{want} into {where} (now: {have or 'absent'})")
    args = [*npm_command(params), "install", "--no-fund", "--no-audit", "--loglevel=error"]
    if params.proxy_install == "private":
        prefix = npm_prefix(params)
        prefix.mkdir(parents=True, exist_ok=True)
        args += ["--prefix", prefix]
    else:
        args += ["-g"]
    run_command(args + [f"{PKG}@{want}"], timeout=300, env=node_env(params), what=f"npm install {PKG}@{want}")
    if params.proxy_install == "global" and have is None and not read_global_record(params):
        record_global_install(params, want)  # npm's global prefix had none: ours to remove (uninstall.ipynb)
    if params.proxy_install == "private":
        from hubrunbook.host.system import make_world_readable

        make_world_readable(npm_prefix(params))
    got = proxy_runs(params)
    if got != want:
        raise CommandError(f"npm installed {PKG} but `--version` says {got!r}, expected {want}")
    return StepResult("ensure_proxy", CHANGED, f"installed configurable-http-proxy {want} in {where} (was: {have or 'absent'})")


def record_global_install(params, version: str) -> None:
    """Record (0600, in the state dir) that we put the proxy into npm's global prefix, which had none before."""
    from datetime import datetime, timezone

    from hubrunbook.core import secretref

    params.layout.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {"package": PKG, "version": version, "package_dir": str(package_dir(params)),
              "installed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    secretref.write_private(params.layout.proxy_global_record, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_global_record(params) -> dict | None:
    """The record of a global proxy install we made (record_global_install), or None. Read-only."""
    try:
        data = json.loads(params.layout.proxy_global_record.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("package") == PKG and data.get("package_dir") else None


def unproven_reason(params, pid: int, *, on_api_port: bool = True) -> str | None:
    """Why *pid* is not proven to be our configurable-http-proxy; None when it is.

    Ours means all of: it runs as root, executes our node binary with our proxy script, our public and API ports,
    is the PID the hub recorded in its proxy pid file and started before that file was written (a recycled PID
    did not), and (*on_api_port*: before the token is sent to it) listens on
    proxy_api_port. Only such a process is ever sent the proxy token or signalled; a name in argv proves nothing
    (any user can start `configurable-http-proxy.py`). A recorded proxy of ours that lost the race for the API port
    (EADDRINUSE) but holds the public port is still ours to stop: callers that signal pass on_api_port=False.
    """
    import os

    import psutil

    from hubrunbook.host import ports
    from hubrunbook.host.process import read_pid, started_before_record

    try:
        proc = psutil.Process(pid)
        uids, exe, cmd = proc.uids(), proc.exe(), proc.cmdline()
    except psutil.Error as exc:
        return f"pid {pid} cannot be inspected ({type(exc).__name__})"
    if uids.real != 0 or uids.effective != 0:
        return f"pid {pid} runs as uid {uids.real}, not root"
    node = choose_node(params)[1]
    if os.path.realpath(exe) != os.path.realpath(node):
        return f"pid {pid} runs {exe}, not our node {node}"
    script = package_dir(params) / "bin" / PKG
    if len(cmd) < 2 or os.path.realpath(cmd[1]) != os.path.realpath(script):
        return f"pid {pid} does not run our proxy script {script}"
    if f"--api-port={params.proxy_api_port}" not in cmd and not _follows(cmd, "--api-port", str(params.proxy_api_port)):
        return f"pid {pid} was not started for our API port {params.proxy_api_port}"
    record = params.layout.proxy_pid_file
    if read_pid(record) != pid:
        return f"pid {pid} is not the PID the hub recorded in {record}"
    if not started_before_record(pid, record):
        return f"pid {pid} started after {record} was written: the recorded PID now belongs to another process"
    if f"--port={params.port}" not in cmd and not _follows(cmd, "--port", str(params.port)):
        return f"pid {pid} was not started for our public port {params.port}"
    if on_api_port and pid not in ports.listeners(params.proxy_api_port):
        return f"pid {pid} does not listen on proxy_api_port {params.proxy_api_port}"
    return None


def _follows(cmd: list[str], flag: str, value: str) -> bool:
    return any(a == flag and b == value for a, b in zip(cmd, cmd[1:]))
