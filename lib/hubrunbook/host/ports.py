"""Who listens on which TCP port (psutil), read-only."""
from __future__ import annotations

import psutil


def listeners(port: int) -> set[int]:
    """PIDs of processes listening on TCP *port* (any address)."""
    pids = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            pids.add(conn.pid)
    return pids


def describe(pid: int) -> str:
    """'pid 123 (node configurable-http-proxy …)' or 'pid 123 (gone)'."""
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())[:300]  # node binary + proxy script paths come first
    except psutil.Error:
        cmd = "gone"
    return f"pid {pid} ({cmd})"


def cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def owner_uid(pid: int) -> int | None:
    """Real uid of *pid*, or None when it cannot be read."""
    try:
        return psutil.Process(pid).uids().real
    except psutil.Error:
        return None


def is_proxy(pid: int) -> bool:
    """True when *pid* runs configurable-http-proxy."""
    return any("configurable-http-proxy" in part for part in cmdline(pid))
