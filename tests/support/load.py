"""Many users logging in for the first time at once, as browsers do: used by tests/integration/test_load.py and
bench/bench_load.py.

A user's first visit, followed request by request through the proxy (``first_visit``):
GET /hub/login (the _xsrf cookie), POST /hub/login with the password → 302 /hub/ → /hub/spawn/<name>, which starts
the server and redirects to /hub/spawn-pending/<name> (the progress page a browser shows; the client re-loads it
every 2 s like the page's own script would poll; so is the "stopping" page of a spawn the hub gave up on, until the
failure page shows why), which redirects once the server is ready → /user/<name>/ → the
OAuth redirects of the single-user server → /user/<name>/lab, 200. A spawn beyond
``c.JupyterHub.concurrent_spawn_limit`` is answered 429 "Too many users trying to log in right now. Try again in N
seconds" with a Retry-After header: the client waits that long and loads /hub/spawn/<name> again, as the page's
countdown script (capacity.RETRY_PAGE) does in a browser; this client runs no JavaScript, it records that the page
carries the script. Anything else (500 "server never showed up", a login refused) is a failure.

``LoadDeployment`` is a sandbox hub built from the session's shared install (env, proxy, Node.js symlinked, as in
support.deployment) whose users hrb-ld<pid>-NN are made by the product's ensure_users, with generated passwords.
"""
from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import requests

from hubrunbook.hub import config, service
from hubrunbook.host import users
from hubrunbook.hub.capacity import spawn_capacity
from hubrunbook.core.params import build_params
from support.deployment import config_template
from support.sandbox import TEST_ROOT, port_params, reset_sandbox, teardown_sandbox

REQUEST_TIMEOUT = 120  # one HTTP request on a machine starting many servers at once
POLL_S = 2


@dataclass
class Visit:
    user: str
    ok: bool = False
    seconds: float = 0.0
    throttled: int = 0  # 429 answers waited out
    told: str = ""  # what the first 429 page said, and its Retry-After header
    page_retries: bool = False  # the 429 page carries hubrunbook's countdown that reloads it (capacity.RETRY_PAGE)
    detail: str = ""
    statuses: list[int] = field(default_factory=list)


def _path(url: str) -> str:
    return urlsplit(url).path


def first_visit(base_url: str, user: str, password: str, *, timeout: float = 900, start: threading.Event | None = None) -> Visit:
    """Log in, get a server and open /user/<name>/lab as a browser does; never raises. See the module docstring."""
    visit = Visit(user)
    if start is not None:
        start.wait()
    t0 = time.monotonic()
    deadline = t0 + timeout
    lab = f"/user/{quote(user)}/lab"
    spawn = f"{base_url}/hub/spawn/{quote(user)}"
    s = requests.Session()
    try:
        s.get(f"{base_url}/hub/login", timeout=REQUEST_TIMEOUT)
        resp = s.post(f"{base_url}/hub/login", timeout=REQUEST_TIMEOUT, allow_redirects=True,
                      data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf", path="/hub/") or ""})
        while True:
            visit.statuses.append(resp.status_code)
            where = _path(resp.url)
            if resp.status_code == 200 and where == lab:
                visit.ok = True
                break
            if time.monotonic() > deadline:
                visit.detail = f"no lab within {timeout:g} s; last: HTTP {resp.status_code} at {where}"
                break
            if resp.status_code == 429:
                visit.throttled += 1
                wait = resp.headers.get("Retry-After", "")
                visit.told = visit.told or f"{_message(resp.text)} (Retry-After: {wait})"
                visit.page_retries = "hubrunbook-retry" in resp.text and "window.location.reload()" in resp.text
                time.sleep(int(wait) if wait.isdigit() else 30)
                resp = s.get(spawn, timeout=REQUEST_TIMEOUT)
            elif resp.status_code == 200 and where.startswith("/hub/spawn-pending/") and (
                    "progress-bar" in resp.text or "Your server is stopping" in resp.text):  # both pages reload
                time.sleep(POLL_S)
                resp = s.get(resp.url, timeout=REQUEST_TIMEOUT)
            else:
                visit.detail = f"HTTP {resp.status_code} at {where}: {_message(resp.text)}"
                break
    except requests.RequestException as exc:
        visit.detail = f"{type(exc).__name__}: {exc}"
    visit.seconds = time.monotonic() - t0
    return visit


def _message(html: str) -> str:
    """The gist of a hub error page (its <p> text), short."""
    import re

    texts = [re.sub(r"<[^>]+>|\s+", " ", p).strip() for p in re.findall(r"<p[^>]*>(.*?)</p>", html, re.S)]
    return " | ".join(t for t in texts if t)[:300] or html[:200]


def burst(base_url: str, credentials: list[tuple[str, str]], *, timeout: float = 900) -> list[Visit]:
    """Every user's first visit at the same moment (threads released together). Never raises."""
    start = threading.Event()
    with ThreadPoolExecutor(max_workers=len(credentials)) as pool:
        futures = [pool.submit(first_visit, base_url, u, p, timeout=timeout, start=start) for u, p in credentials]
        time.sleep(0.5)  # every thread waits at the start line
        start.set()
        return [f.result() for f in futures]


def summary(visits: list[Visit]) -> dict:
    ok = [v.seconds for v in visits if v.ok]
    return {"users": len(visits), "ok": len(ok), "median": statistics.median(ok) if ok else None,
            "slowest": max(ok) if ok else None, "throttled_users": sum(1 for v in visits if v.throttled),
            "failures": [f"{v.user}: {v.detail}" for v in visits if not v.ok]}


class LoadDeployment:
    """A running sandbox hub with *n* fresh users made by ensure_users (hrb-ld<pid>-NN); teardown() removes all."""

    def __init__(self, shared, n: int, tag: str = "ld", **values):
        self.shared = shared
        self.prefix = TEST_ROOT / f"load-{tag}-{os.getpid()}"
        self.names = [f"hrb-{tag}{os.getpid()}-{i:02d}" for i in range(n)]
        self.params = build_params({**port_params(), "prefix": str(self.prefix), "users": self.names,
                                    "admin_users": [], **values})

    def build(self) -> "LoadDeployment":
        p = self.params
        reset_sandbox(self.prefix.name)
        self.prefix.mkdir(parents=True)
        os.chmod(self.prefix, 0o755)
        for name in ("env", "userenv", "proxy", "nodejs"):  # userenv: c.Spawner.cmd
            (self.prefix / name).symlink_to(self.shared.layout.root / name)
        p.config_path.parent.mkdir(parents=True)
        shutil.copy(config_template(self.shared), p.config_path)
        config.ensure_config(p)
        service.ensure_hub_secrets(p)
        users.ensure_users(p)
        service.ensure_hub_running(p)
        return self

    def credentials(self) -> list[tuple[str, str]]:
        return [(name, users.user_password(self.params, name)) for name in self.names]

    def capacity(self):
        return spawn_capacity(self.params)

    def config_value(self, key: str) -> str:
        """The value our managed line gives *key* in the deployed config file."""
        for line in self.params.config_path.read_text().splitlines():
            if line.startswith(f"{key} =") and line.endswith(config.MARK):
                return line.split("=", 1)[1].removesuffix(config.MARK).strip()
        raise KeyError(key)

    def teardown(self) -> None:
        teardown_sandbox(self.params)  # the hub stops the servers it spawned; the users are in our registry
