"""Verifying a hub over real HTTP, the way a user meets it: log in, spawn, write a file, list users, get refused.

Measured on JupyterHub 6.1.1 / jupyter-server 2.x behind configurable-http-proxy:
- GET /hub/login sets ``_xsrf`` (path /hub/); POST /hub/login with username, password, _xsrf answers 302 and sets
  ``jupyterhub-hub-login`` (~0.05 s); wrong password, unknown and not-allowed users all get 403. A password PAM
  rejects takes ~3 s (wrong: 3.2 s, unknown user: 2.8 s); a not-allowed user with the right password ~0.05 s.
- Cookie-authenticated POST/DELETE on /hub/api need ``X-XSRFToken`` = the /hub/ ``_xsrf`` cookie; GET does not.
- POST /hub/api/users/<u>/server blocks up to slow_spawn_timeout (10 s): 201 when ready (~3–6 s here), 202 when
  still pending; a missing notebook dir gives 500 (InvalidStateError) after ~11 s; a Spawner.cmd the user cannot
  run (bare 'jupyterhub-singleuser' found through a PATH with /root dirs) gives 500 at once.
- /user/<u>/api/... answers 403 until the browser OAuth dance is done; a page GET (/user/<u>/ → /lab) does it and
  sets ``jupyterhub-user-<u>`` and ``_xsrf`` (path /user/<u>/). PUT to the contents API needs ``X-XSRFToken`` =
  that /user/<u>/ cookie (the /hub/ one gives 403 "XSRF cookie does not match").
- An admin's login cookie can GET /hub/api/users (200); a non-admin gets 403 (needs list:users). No token needed.
"""
from __future__ import annotations

import os
import pwd
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import requests

from hubrunbook.core import secretref
from hubrunbook.core.errors import RunbookError, VerificationError
from hubrunbook.core.steps import FAILED, OK, StepResult
from hubrunbook.hub.tls import http_session

def _user_url(base_url: str, username: str) -> str:
    return f"{base_url}/user/{quote(username)}/"


def _api_user(base_url: str, username: str) -> str:
    return f"{base_url}/hub/api/users/{quote(username)}"


def _xsrf(session: requests.Session, path: str) -> str:
    for cookie in session.cookies:
        if cookie.name == "_xsrf" and cookie.path == path:
            return cookie.value
    raise VerificationError(f"no _xsrf cookie for {path} in this session (not logged in, or the server did not set it)")


def _hub_xsrf(session: requests.Session) -> dict[str, str]:
    return {"X-XSRFToken": _xsrf(session, "/hub/")}


def try_login(base_url: str, username: str, password: str, timeout: float = 30) -> tuple[requests.Session, int]:
    """GET /hub/login, POST the form; return (session, HTTP status of the POST). 302 means logged in. Read-only."""
    secretref.register(password)
    session = http_session(base_url)  # the hub's https URL: verified with ssl_ca, never unverified
    try:
        page = session.get(f"{base_url}/hub/login", timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"GET {base_url}/hub/login: no answer ({type(exc).__name__}); is the hub running?") from None
    if page.status_code != 200:
        raise VerificationError(f"GET {base_url}/hub/login answered HTTP {page.status_code}, expected the login page (200)")
    form = {"username": username, "password": password, "_xsrf": session.cookies.get("_xsrf", default="")}
    try:
        resp = session.post(f"{base_url}/hub/login", data=form, allow_redirects=False, timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"POST {base_url}/hub/login as {username}: no answer within {timeout:g} s ({type(exc).__name__})") from None
    if resp.status_code == 302 and "jupyterhub-hub-login" not in {c.name for c in session.cookies}:
        raise VerificationError(f"login as {username} redirected to {resp.headers.get('location')} without a login cookie")
    return session, resp.status_code


def login(base_url: str, username: str, password: str, timeout: float = 30) -> requests.Session:
    """Log in through the login form; return the cookie session or raise VerificationError. Read-only."""
    session, status = try_login(base_url, username, password, timeout)
    if status == 302:
        return session
    why = " (wrong password, unknown user, or not in the allow list; the hub log tells which)" if status == 403 else ""
    raise VerificationError(f"login as {username} at {base_url}/hub/login failed: HTTP {status}{why}")


def user_model(session: requests.Session, base_url: str, username: str, timeout: float = 10) -> dict:
    """GET /hub/api/users/<name> with the session cookie. Read-only."""
    resp = session.get(_api_user(base_url, username), timeout=timeout)
    if resp.status_code != 200:
        raise VerificationError(f"GET /hub/api/users/{username}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json()


def _server_state(model: dict) -> str:
    server = (model.get("servers") or {}).get("")
    if not server:
        return f"no server (pending: {model.get('pending')})"
    return f"ready={server.get('ready')}, pending={server.get('pending')}, stopped={server.get('stopped')}"


def server_ready(session: requests.Session, base_url: str, username: str) -> bool:
    """Whether the default server of *username* is ready. Read-only."""
    return bool(((user_model(session, base_url, username).get("servers") or {}).get("") or {}).get("ready"))


def start_server(session: requests.Session, base_url: str, username: str, timeout: float = 90) -> float:
    """Ask the hub to spawn *username*'s default server and wait until it is ready; return the seconds it took.

    Raises VerificationError with the last state seen when the spawn fails or *timeout* passes.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:  # the hub holds this request up to slow_spawn_timeout (10 s) before answering 202
        resp = session.post(f"{_api_user(base_url, username)}/server", headers=_hub_xsrf(session), timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"POST /hub/api/users/{username}/server: no answer within {timeout:g} s ({type(exc).__name__})") from None
    if resp.status_code not in (201, 202, 400):
        raise VerificationError(
            f"spawning {username}'s server failed: HTTP {resp.status_code} {resp.text[:200]}. See the hub log "
            "(missing notebook dir, jupyterhub-singleuser not runnable by the user, ...)"
        )
    state = "nothing yet"
    while time.monotonic() < deadline:
        model = user_model(session, base_url, username)
        state = _server_state(model)
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return time.monotonic() - t0
        if not server and not model.get("pending"):
            raise VerificationError(f"{username}'s server stopped while spawning ({state}); see the hub log for the cause")
        time.sleep(0.5)
    raise VerificationError(f"{username}'s server was not ready within {timeout:g} s (waiting for servers[''].ready; last state: {state})")


def open_user_server(session: requests.Session, base_url: str, username: str, timeout: float = 30) -> str:
    """GET /user/<name>/ as a browser would (OAuth dance included); return the server's _xsrf token. Read-only."""
    url = _user_url(base_url, username)
    try:
        resp = session.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"GET {url}: no answer within {timeout:g} s ({type(exc).__name__})") from None
    if resp.status_code != 200 or not resp.url.startswith(url):
        raise VerificationError(f"GET {url} ended at {resp.url} with HTTP {resp.status_code}, expected the user's server page")
    return _xsrf(session, f"/user/{quote(username)}/")


def write_file_as_user(session: requests.Session, base_url: str, username: str, name: str, content: str,
                       notebook_dir: str | Path, timeout: float = 30) -> Path:
    """PUT a text file through the user's server contents API; check on disk it is in *notebook_dir*, owned by the user.

    Side effect: creates *name* in the user's notebook dir (the caller deletes it with delete_file_as_user).
    Returns the path on disk; raises VerificationError when the file is missing or owned by someone else.
    """
    token = open_user_server(session, base_url, username, timeout)
    url = f"{_user_url(base_url, username)}api/contents/{quote(name)}"
    resp = session.put(url, json={"type": "file", "format": "text", "content": content},
                       headers={"X-XSRFToken": token}, timeout=timeout, allow_redirects=False)
    if resp.status_code not in (200, 201):
        raise VerificationError(f"PUT {url}: HTTP {resp.status_code} {resp.text[:200]}")
    path = Path(notebook_dir) / name
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VerificationError(
            f"the server saved {name} but it is not in {notebook_dir}: the server does not run in the notebook dir "
            "(check c.Spawner.notebook_dir)"
        ) from None
    uid = pwd.getpwnam(username).pw_uid
    if st.st_uid != uid:
        owner = _owner_name(st.st_uid)
        raise VerificationError(f"{path} is owned by {owner}, not by {username}: the server does not run as the user")
    return path


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def delete_file_as_user(session: requests.Session, base_url: str, username: str, name: str, timeout: float = 30) -> None:
    """DELETE a file through the user's contents API (204 expected)."""
    token = _xsrf(session, f"/user/{quote(username)}/")
    url = f"{_user_url(base_url, username)}api/contents/{quote(name)}"
    resp = session.delete(url, headers={"X-XSRFToken": token}, timeout=timeout, allow_redirects=False)
    if resp.status_code != 204:
        raise VerificationError(f"DELETE {url}: HTTP {resp.status_code} {resp.text[:200]}")


def stop_server(session: requests.Session, base_url: str, username: str, timeout: float = 60) -> None:
    """Stop *username*'s default server and wait until the hub lists none; raise VerificationError after *timeout*."""
    deadline = time.monotonic() + timeout
    try:
        resp = session.delete(f"{_api_user(base_url, username)}/server", headers=_hub_xsrf(session), timeout=timeout)
    except requests.RequestException as exc:
        raise VerificationError(f"DELETE /hub/api/users/{username}/server: no answer ({type(exc).__name__})") from None
    if resp.status_code not in (202, 204, 400):
        raise VerificationError(f"stopping {username}'s server failed: HTTP {resp.status_code} {resp.text[:200]}")
    state = "nothing yet"
    while time.monotonic() < deadline:
        model = user_model(session, base_url, username)
        state = _server_state(model)
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.5)
    raise VerificationError(f"{username}'s server did not stop within {timeout:g} s (last state: {state})")


def list_users(session: requests.Session, base_url: str, timeout: float = 10) -> list[str]:
    """GET /hub/api/users with an admin's login cookie; return the names. Read-only."""
    resp = session.get(f"{base_url}/hub/api/users", headers=_hub_xsrf(session), timeout=timeout)
    if resp.status_code != 200:
        raise VerificationError(f"GET /hub/api/users: HTTP {resp.status_code} {resp.text[:200]}")
    return [u["name"] for u in resp.json()]


# --- StepResult probes ------------------------------------------------------------------------
def check_local_login(params, user: str, password: str) -> StepResult:
    """Log in as *user* at the public URL and report it. Read-only."""
    try:
        login(params.public_url, user, password)
    except VerificationError as exc:
        return StepResult("check_local_login", FAILED, str(exc), [("user logs in", FAILED, str(exc))])
    return StepResult("check_local_login", OK, f"{user} logged in at {params.public_url}/hub/login",
                      [("user logs in", OK, f"{user}: 302 and login cookie")])


def _refused(base_url: str, username: str, password: str) -> tuple[str, str]:
    t0 = time.monotonic()
    _, status = try_login(base_url, username, password)
    if status == 403:  # PAM delays a rejected password ~3 s; an accepted one that the allow list refuses is fast
        return OK, f"{username}: HTTP 403 after {time.monotonic() - t0:.1f} s"
    return FAILED, f"{username}: HTTP {status}, expected 403" + (" (logged in!)" if status == 302 else "")


def _outsider_row(params, outsider: tuple[str, str] | None) -> tuple[str, str]:
    if outsider is None:
        return "not run", "no outsider (an existing system user outside the allow list) was given"
    if params.allow_all:
        return "not run", "allow_all is set: every system user may log in"
    name, password = outsider
    secretref.register(password)
    result, detail = _refused(params.public_url, name, password)
    if result == OK and os.geteuid() == 0:  # prove the 403 is the allow list, not a wrong password
        from hubrunbook.host.users import password_matches

        if not password_matches(name, password):
            return FAILED, f"{detail}, but the given password is not {name}'s real one, so this proves nothing"
        detail += " with its correct password (checked against /etc/shadow)"
    return result, detail


def check_verification(params, *, user: str, password: str, admin: str, admin_password: str,
                       outsider: tuple[str, str] | None = None) -> StepResult:
    """Verify the hub as users meet it: login, spawn, file ownership, admin API, refusals. Returns FAILED rows, never raises.

    Side effects: starts *user*'s server (stopped again unless it was already running) and writes and deletes
    a probe file in the user's notebook dir. *outsider* is (name, password) of a system user not allowed in.
    """
    for value in (password, admin_password):
        secretref.register(value)
    url = params.public_url
    rows: list[tuple[str, str, str]] = []

    def probe(label: str, fn, needs=True):
        if not needs:
            rows.append((label, FAILED, "not attempted: an earlier check failed"))
            return None
        try:
            value, detail = fn()
        except (RunbookError, requests.RequestException, OSError, KeyError, ValueError) as exc:
            rows.append((label, FAILED, f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunbookError) else str(exc)))
            return None
        rows.append((label, OK, detail))
        return value if value is not None else True

    # the refusals wait out PAM's ~3 s failure delay: run them while the server spawns
    pool = ThreadPoolExecutor(max_workers=2)
    wrong_pw = pool.submit(_safe, lambda: _refused(url, user, _wrong(password)))
    outsider_row = pool.submit(_safe, lambda: _outsider_row(params, outsider))
    pool.shutdown(wait=False)
    session = probe("user logs in", lambda: (login(url, user, password), f"{user}: 302 and login cookie"))

    def spawn():
        if server_ready(session, url, user):
            return "running", "already running (left running)"
        return "started", f"{user}'s server ready after {start_server(session, url, user):.1f} s"

    spawned = probe("server spawns", spawn, session)
    nbdir = params.notebook_dir.replace("{username}", user)
    try:
        probe("server runs as user in notebook dir (file owned by user)", lambda: _probe_file(session, url, user, nbdir), spawned)
        probe("admin lists users via REST API", lambda: _probe_list(login(url, admin, admin_password), url, {user, admin}))
        rows.append(("wrong password refused (403)", *wrong_pw.result(timeout=60)))
        rows.append(("user not in allow list refused (403)", *outsider_row.result(timeout=60)))
    finally:
        if spawned == "started":
            probe("servers started by the probe stopped", lambda: (stop_server(session, url, user), f"{user}'s server stopped"))
    failed = [r[0] for r in rows if r[1] == FAILED]
    if failed:
        return StepResult("check_verification", FAILED, f"{len(failed)} check(s) failed: {', '.join(failed)}", rows)
    return StepResult("check_verification", OK, f"{url}: {user} logs in, spawns and writes as itself; admin API works; refusals hold", rows)


def _safe(fn) -> tuple[str, str]:
    try:
        return fn()
    except (RunbookError, requests.RequestException) as exc:
        return FAILED, str(exc)


def _wrong(password: str) -> str:
    wrong = secrets.token_urlsafe(12)
    return wrong if wrong != password else wrong + "x"


def _probe_file(session, url: str, user: str, nbdir: str) -> tuple[bool, str]:
    name = f"hubrunbook-probe-{secrets.token_hex(4)}.txt"
    checkpoints = Path(nbdir) / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    try:
        path = write_file_as_user(session, url, user, name, "written by hubrunbook's verification\n", nbdir)
    finally:  # remove the probe file wherever the server put it, also when the check failed
        try:
            delete_file_as_user(session, url, user, name)
        except (VerificationError, requests.RequestException):
            pass
        if (Path(nbdir) / name).exists():
            (Path(nbdir) / name).unlink()
        if not had_checkpoints and checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()  # jupyter-server made it for our file; leave the user's dir as we found it
    return True, f"{path} written through {url}/user/{user}/api/contents, owned by {user}; deleted again"


def _probe_list(session, url: str, expected: set[str]) -> tuple[list[str], str]:
    names = list_users(session, url)
    missing = expected - set(names)
    if missing:
        raise VerificationError(f"GET /hub/api/users answered but lacks {', '.join(sorted(missing))}: {', '.join(names)}")
    return names, f"{len(names)} users: {', '.join(names)}"
