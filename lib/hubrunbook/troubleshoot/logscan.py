"""Known JupyterHub / configurable-http-proxy log messages, and the scan of the hub log for them.

Like JupyterHub's own "log messages" page: each entry is an example line (text taken from the
jupyterhub 6.1.1 / configurable-http-proxy 5.3.0 sources, or from the OS), its cause and the action.
Only the last run of the hub in the log is read (from the last "Running JupyterHub version" line),
and only its last ``tail_kb`` KiB, so old incidents that were fixed since do not come back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hubrunbook.hub.culler import hide_tokens

START_MARKER = "Running JupyterHub version"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")  # configurable-http-proxy colours its level names


@dataclass(frozen=True)
class LogMessage:
    id: str
    pattern: str  # regular expression searched in each line
    title: str
    example: str
    cause: str
    action: str
    related: str = ""  # the live check that confirms it, if any

    @property
    def regex(self) -> re.Pattern:
        return re.compile(self.pattern)


LOG_MESSAGES: tuple[LogMessage, ...] = (
    LogMessage(
        "proxy-api-403", r"api_request to proxy failed: 403",
        "the proxy refused the hub's token (guide §3.2)",
        "[E 2026-11-25 21:00:00.000 JupyterHub proxy:989] api_request to proxy failed: 403, message='Forbidden', "
        "url='http://127.0.0.1:8001/api/routes'",
        "a configurable-http-proxy started earlier, with another CONFIGPROXY_AUTH_TOKEN, still listens on the "
        "proxy API port; the hub exits 1",
        "stop that proxy by its PID (the troubleshoot runbook finds it by the port and repairs it with "
        "apply_fixes), then start the hub", "proxy-api-port"),
    LogMessage(
        "proxy-eaddrinuse", r"EADDRINUSE",
        "the proxy could not listen on its port",
        "[ConfigProxy] error: Uncaught Exception: listen EADDRINUSE: address already in use 127.0.0.1:8000",
        "another process holds the public port (or the proxy API port); the proxy keeps running without it and "
        "the hub still reports success, so users reach the other process",
        "find the listener (ss -ltnp 'sport = :PORT'), stop it if it is yours or move the hub to another port",
        "public-port"),
    LogMessage(
        "hub-bind-failed", r"Failed to bind hub to",
        "the hub could not listen on its own port",
        "[E 2026-11-25 21:00:00.000 JupyterHub app:3917] Failed to bind hub to http://127.0.0.1:8081/hub/",
        "another process holds hub_port (c.JupyterHub.hub_port); the hub exits",
        "stop that process or choose another hub_port", "hub-port"),
    LogMessage(
        "no-allow-config", r"No allow config found",
        "no allow rule: nobody can log in",
        "[W 2026-11-25 21:00:00.000 JupyterHub auth:274] No allow config found, it's possible that nobody can "
        "login to your Hub!",
        "JupyterHub ≥ 5 lets nobody in without allowed_users, allow_all or another allow rule; every login gets "
        "the same 403 page as a wrong password",
        "set c.Authenticator.allowed_users (configure runbook: users / allowed_users) or allow_all, restart the hub",
        "allow-rule"),
    LogMessage(
        "getpwnam", r"getpwnam\(\): name not found",
        "a user logged in who has no system account",
        "[E 2026-11-25 21:00:00.000 JupyterHub user:1073] Unhandled error starting alice's server: "
        "\"getpwnam(): name not found: 'alice'\"",
        "LocalProcessSpawner runs each server as the system user of the same name; an OAuth user (or one "
        "removed from /etc/passwd) has none, so the spawn fails with a 500",
        "create the system user (configure runbook users, or c.LocalAuthenticator.create_system_users = True)",
        "user-accounts"),
    LogMessage(
        "singleuser-permission", r"Permission denied trying to run",
        "spawned users cannot run jupyterhub-singleuser",
        "[E 2026-11-25 21:00:00.000 JupyterHub spawner:2168] Permission denied trying to run "
        "'/opt/hubrunbook/env/bin/jupyterhub-singleuser'. Does alice have access to this file?",
        "the hub env (or the interpreter it was built from) lies under a directory users cannot enter, e.g. a "
        "0700 home such as /root",
        "rebuild the hub env from a Python every user can run (/usr/bin/python3) under a 0755 prefix",
        "singleuser-runnable"),
    LogMessage(
        "spawn-timeout", r"server failed to start in \d+ seconds, giving up",
        "a server did not start within Spawner.start_timeout",
        "[W 2026-11-25 21:00:00.000 JupyterHub user:1059] alice's server failed to start in 30 seconds, giving up.",
        "usually a missing notebook_dir (the server exits at once, the hub waits the full timeout), or a server "
        "that crashes at start",
        "create the notebook dir owned by the user; read the server's lines just above in the log",
        "notebook-dirs"),
    LogMessage(
        "notebook-dir-missing", r"TraitError: No such directory: ",
        "a user's server refused to start: its notebook dir does not exist",
        "traitlets.traitlets.TraitError: No such directory: ''/home/alice/notebooks''",
        "c.Spawner.notebook_dir (jupyter_server's root_dir) names a directory that does not exist for this user; "
        "the server exits and the spawn fails with a 500",
        "create the notebook dir owned by the user (repaired with apply_fixes for users hubrunbook created)",
        "notebook-dirs"),
    LogMessage(
        "invalid-state", r"InvalidStateError",
        "a spawn failed with InvalidStateError",
        "asyncio.exceptions.InvalidStateError: Exception is not set.  (then: 500 POST /hub/api/users/alice/server)",
        "in JupyterHub 6.1.1 a spawn whose server could not start (e.g. notebook_dir missing) answers 500 "
        "InvalidStateError after the start timeout",
        "create the notebook dir owned by the user; check the user's account and home", "notebook-dirs"),
    LogMessage(
        "spawner-failed", r"Spawner failed to start \[status=",
        "a single-user server exited during start",
        "[E 2026-11-25 21:00:00.000 JupyterHub base:1347] Spawner failed to start [status=1]. The logs for "
        "alice may contain details.",
        "jupyterhub-singleuser exited at once: a missing notebook dir, a broken env, or a user without a home",
        "read the lines above it in the log; check the user's home and notebook dir", "notebook-dirs"),
    LogMessage(
        "mutable-mapping", r"has no attribute 'MutableMapping'",
        "tornado is too old for this Python and JupyterHub (guide §3.1)",
        "AttributeError: module 'collections' has no attribute 'MutableMapping'",
        "tornado < 6 was installed into the hub env (e.g. a dependency pinned tornado<6); it cannot even be "
        "imported on Python ≥ 3.10, so every JupyterHub entry point crashes",
        "reinstall the pinned jupyterhub with the tornado it requires (repaired with apply_fixes)", "hub-packages"),
    LogMessage(
        "db-schema", r"Found database schema version \S+ != \S+",
        "the hub database schema is older than the installed JupyterHub",
        "Found database schema version ff1860e38070 != f460b0348206. Backup your database and run "
        "`jupyterhub upgrade-db` to upgrade to the latest schema.",
        "JupyterHub was upgraded but the database was not; the hub refuses to start",
        "back up the database file, run `jupyterhub upgrade-db -f <config>` (repaired with apply_fixes)",
        "db-schema"),
    LogMessage(
        "db-connect", r"Failed to connect to db",
        "the hub cannot open its database",
        "[E 2026-11-25 21:00:00.000 JupyterHub app:2060] Failed to connect to db: sqlite:///jupyterhub.sqlite",
        "the database file or its directory is not writable, the disk is full, or the schema is from another "
        "JupyterHub version",
        "check the state directory's owner, mode and free space; if JupyterHub was upgraded run upgrade-db",
        "disk-space"),
    LogMessage(
        "proxy-not-found", r"Failed to find proxy",
        "the hub cannot find configurable-http-proxy",
        "[E 2026-11-25 21:00:00.000 JupyterHub proxy:799] Failed to find proxy "
        "['configurable-http-proxy']",
        "configurable-http-proxy is not installed where c.ConfigurableHTTPProxy.command points (or not on PATH)",
        "install it (install runbook, or repaired with apply_fixes)", "proxy-installed"),
    LogMessage(
        "proxy-module-missing", r"Cannot find module .*configurable-http-proxy",
        "Node.js cannot find configurable-http-proxy",
        "Error: Cannot find module '/opt/hubrunbook/proxy/node_modules/configurable-http-proxy/bin/"
        "configurable-http-proxy'",
        "c.ConfigurableHTTPProxy.command names [node, <script>] and the script is gone (proxy removed or never "
        "installed there); the proxy exits at once and so does the hub",
        "install the pinned configurable-http-proxy (repaired with apply_fixes)", "proxy-installed"),
    LogMessage(
        "proxy-exit", r"Proxy failed to start with exit code",
        "configurable-http-proxy exited at start",
        "RuntimeError: Proxy failed to start with exit code 1",
        "the proxy could not run: Node.js too old for this configurable-http-proxy, or its API port is taken",
        "check `node --version` against the proxy's needs and who listens on proxy_api_port", "proxy-installed"),
    LogMessage(
        "cookie-secret", r"Refusing to run JupyterHub with invalid cookie_secret_file",
        "the cookie secret file is unusable",
        "[E 2026-11-25 21:00:00.000 JupyterHub app:1900] Refusing to run JupyterHub with invalid "
        "cookie_secret_file. /opt/hubrunbook/secrets/cookie_secret error was: cookie_secret_file can be read or "
        "written by anybody",
        "the cookie secret file is readable by others, or not 32 bytes of hex",
        "chmod 600 the file (repaired with apply_fixes) or delete it to let the hub generate one",
        "secret-files"),
    LogMessage(
        "disk-full", r"No space left on device|database or disk is full",
        "the disk is full",
        "sqlite3.OperationalError: database or disk is full",
        "the filesystem holding the hub's state has no space left",
        "free space on that filesystem (old logs, backups), then restart the hub", "disk-space"),
)


def hub_log_lines(params, tail_kb: int = 256) -> list[tuple[int, str]]:
    """(line number, text) of the hub's last run: from the unit's journal under systemd, else from the log file."""
    from hubrunbook.host import systemd

    if systemd.mode(params) == "systemd":
        return _last_run(systemd.journal_lines(params, max(200, tail_kb * 8)), cut=False)
    return last_run_lines(params.layout.hub_log, tail_kb)


def last_run_lines(path: Path, tail_kb: int = 256) -> list[tuple[int, str]]:
    """(line number, text) of the hub's last run in *path*: after the last start line, last *tail_kb* KiB only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            start = max(0, size - tail_kb * 1024)
            fh.seek(start)
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return _last_run(data.splitlines(), cut=bool(start))


def _last_run(raw: list[str], *, cut: bool) -> list[tuple[int, str]]:
    lines = [hide_tokens(ANSI_RE.sub("", line)) for line in raw]  # a failed cull prints the culler's token
    if cut:
        lines = lines[1:]  # the first line is cut
    first = 0
    for i in range(len(lines) - 1, -1, -1):
        if START_MARKER in lines[i]:
            first = i
            break
    return [(i + 1, line) for i, line in enumerate(lines)][first:]


def match_log(lines: list[tuple[int, str]]) -> list[tuple[LogMessage, list[str]]]:
    """Each known message seen in *lines* with the lines that matched (in order)."""
    found = []
    for msg in LOG_MESSAGES:
        rx = msg.regex
        hits = [text.strip() for _, text in lines if rx.search(text)]
        if hits:
            found.append((msg, hits))
    return found
