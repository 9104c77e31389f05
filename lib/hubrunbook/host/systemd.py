"""The hub as a systemd service: the unit file, systemctl and the journal. Read-only helpers plus the unit writer.

Used by service.py, which decides between this and the managed background process.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.shell import run_command

UNIT_DIR = Path("/etc/systemd/system")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHOW_KEYS = ("ActiveState", "SubState", "Result", "MainPID", "UnitFileState", "NRestarts", "ExecMainStatus",
             "LoadState", "ActiveEnterTimestamp")


def booted() -> bool:
    """Whether systemd is PID 1 here (sd_booted(3): /run/systemd/system exists) and systemctl is installed."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def mode(params) -> str:
    """'systemd' or 'process': how the hub runs on this machine with these parameters."""
    if params.service == "process":
        return "process"
    if booted():
        return "systemd"
    if params.service == "systemd":
        raise PreflightError("service: 'systemd' was asked for but systemd is not PID 1 on this machine "
                             "(/run/systemd/system is missing). Fix: service: 'auto' (a managed process) or boot with systemd")
    return "process"


def unit(params) -> str:
    return f"{params.service_name}.service"


def unit_path(params) -> Path:
    return UNIT_DIR / unit(params)


def render_unit(params, *, jupyterhub: Path, hub_env: Path) -> str:
    """The unit file text. The proxy is the hub's child in the unit's cgroup: stopping the unit stops both."""
    path = f"{params.layout.env_dir / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return f"""\
# Written by hubrunbook (configure.ipynb) for the prefix {params.prefix}; edits here are replaced on the next run.
[Unit]
Description=JupyterHub ({params.prefix})
Documentation=https://jupyterhub.readthedocs.io/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={jupyterhub} -f {params.config_path}
WorkingDirectory={params.layout.state_dir}
EnvironmentFile={hub_env}
Environment=PATH={path}
Restart=on-failure
RestartSec=2s
KillMode=control-group
TimeoutStopSec=30s
SyslogIdentifier={params.service_name}

[Install]
WantedBy=multi-user.target
"""


def systemctl(*args: str, timeout: float = 60) -> str:
    out = run_command(["systemctl", *args], timeout=timeout, what=f"systemctl {' '.join(args)}")
    return out.stdout


def state(params) -> dict[str, str]:
    """`systemctl show` of the unit: ActiveState, SubState, Result, MainPID, UnitFileState, NRestarts, … (read-only)."""
    try:
        out = run_command(["systemctl", "show", unit(params), "--property", ",".join(SHOW_KEYS)], timeout=20,
                          what="systemctl show")
    except Exception as exc:  # systemctl missing or the manager unreachable
        return {"error": str(exc)}
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def main_pid(params) -> int | None:
    pid = state(params).get("MainPID", "0")
    return int(pid) if pid.isdigit() and int(pid) > 0 else None


def describe_state(st: dict[str, str]) -> str:
    """'active (running), enabled, MainPID 123, restarts 0' from a state() dict."""
    if "error" in st:
        return f"unknown ({st['error']})"
    if st.get("LoadState") == "not-found":
        return "no such unit"
    return (f"{st.get('ActiveState', '?')} ({st.get('SubState', '?')}), {st.get('UnitFileState', '?')}, "
            f"MainPID {st.get('MainPID', '?')}, result {st.get('Result', '?')}, restarts {st.get('NRestarts', '?')}")


def journal_lines(params, lines: int = 30) -> list[str]:
    """The unit's last journal lines, message text only (secrets masked by shell.run_command)."""
    args = ["journalctl", "--no-pager", "--quiet", "-o", "cat", "-u", unit(params), "-n", str(lines)]
    try:
        return run_command(args, timeout=20, what="journalctl").stdout.splitlines()
    except Exception as exc:
        return [f"(journal unreadable: {exc})"]


def failure_report(params) -> str:
    """The unit's state and its last journal lines, for an error message."""
    tail = "\n".join(journal_lines(params, 25))
    return (f"unit {unit(params)}: {describe_state(state(params))}\n"
            f"journalctl -u {unit(params)} (last lines):\n{tail}")


def write_unit(params, text: str) -> None:
    """Write the unit file atomically (0644, root) and reload systemd."""
    path = unit_path(params)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    systemctl("daemon-reload")


def check_unit_name(name: str) -> str:
    if not UNIT_NAME_RE.match(name) or name.endswith(".service"):
        raise ValueError(f"service_name must be a unit name such as 'jupyterhub' (letters, digits, '_', '.', '-'; "
                         f"without '.service'); got {name!r}")
    return name

