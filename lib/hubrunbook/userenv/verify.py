"""Verification: spawn a user's server through the hub and import each listed package in a kernel as that user.

The kernel round-trip is jupyter_server's own API, as JupyterLab uses it: POST /user/<u>/api/kernels starts a kernel
of a named spec, a websocket on /api/kernels/<id>/channels carries an execute_request (Jupyter messaging v5, JSON),
stdout comes back on iopub, then DELETE stops the kernel. websocket-client does the websocket (it is jupyter_server's
own client dependency). Before the hub exists (the first `make deploy` runs this runbook before configure.ipynb), the
same import code runs with each env's python as the unprivileged account nobody, and configure.ipynb repeats the
kernel check through the hub it started.
"""
from __future__ import annotations

import json
import ssl
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import requests

from hubrunbook.core.errors import RunbookError, VerificationError
from hubrunbook.core.steps import FAILED, OK, SKIPPED, StepResult
from hubrunbook.hub import probe
from hubrunbook.host.process import hub_api_ok
from hubrunbook.host.users import read_registry, user_password
from hubrunbook.userenv import build

# run in the kernel (or by the env's python): import every top-level module of each distribution; JSON on stdout
IMPORT_CODE = r'''
import importlib, importlib.metadata as _m, json as _j
def _hrb_tops(d):
    tops = (d.read_text("top_level.txt") or "").split()
    if not tops:
        tops = sorted({f.parts[0].removesuffix(".py") for f in (d.files or []) if f.parts and f.parts[0] != ".."
                       and not f.parts[0].endswith((".dist-info", ".data", ".pth")) and (len(f.parts) > 1 or f.suffix == ".py")})
    return [t for t in tops if t.isidentifier() and not t.startswith("_") and not t.endswith("__mypyc")]
_hrb_out = {}
for _n in %(names)r:
    try:
        _d = _m.distribution(_n)
    except _m.PackageNotFoundError:
        _hrb_out[_n] = "not installed"
        continue
    _errs, _tops = [], _hrb_tops(_d) or [_n.replace("-", "_")]
    for _t in _tops:
        try:
            importlib.import_module(_t)
        except BaseException as _e:
            _errs.append(f"import {_t}: {type(_e).__name__}: {_e}")
    _hrb_out[_n] = "; ".join(_errs) or "ok: import " + ", ".join(_tops)
print("HRB-IMPORTS " + _j.dumps(_hrb_out))
'''


def import_code(names: list[str]) -> str:
    return IMPORT_CODE % {"names": list(names)}


def parse_imports(stdout: str) -> dict[str, str]:
    for line in stdout.splitlines():
        if line.startswith("HRB-IMPORTS "):
            return json.loads(line[len("HRB-IMPORTS "):])
    raise VerificationError(f"the import check printed no result; output: {stdout[-300:]!r}")


def kernels_to_check(params) -> dict[str, list[str]]:
    """{kernel spec name: distributions to import}: the user env's python3 and each extra kernel."""
    out = {"python3": build.listed_packages(params) or ["ipykernel"]}
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    for name, pkgs in params.user_kernels.items():
        out[name] = [canonicalize_name(Requirement(s).name) for s in pkgs] or ["ipykernel"]
    return out


def execute_in_kernel(session: requests.Session, base_url: str, user: str, kernel: str, code: str,
                      timeout: float = 120) -> str:
    """Start a *kernel* in *user*'s running server, run *code*, return its stdout; the kernel is stopped again."""
    import websocket

    xsrf = probe.open_user_server(session, base_url, user)
    api = f"{base_url}/user/{quote(user)}/api/kernels"
    resp = session.post(api, json={"name": kernel}, headers={"X-XSRFToken": xsrf}, timeout=timeout)
    if resp.status_code != 201:
        raise VerificationError(f"POST {api} (kernel {kernel}): HTTP {resp.status_code} {resp.text[:300]}")
    kid = resp.json()["id"]
    try:
        sid, mid = uuid.uuid4().hex, uuid.uuid4().hex
        url = f"{'wss' if base_url.startswith('https') else 'ws'}{api[api.index(':'):]}/{kid}/channels?session_id={sid}"
        cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        sslopt = {}
        if base_url.startswith("https"):
            verify = session.verify
            sslopt = {"cert_reqs": ssl.CERT_REQUIRED, **({"ca_certs": verify} if isinstance(verify, str) else {})}
            adapter = session.get_adapter(base_url + "/")
            if getattr(adapter, "hostname", None):
                sslopt["server_hostname"] = adapter.hostname
                sslopt["check_hostname"] = True
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
        ws = websocket.create_connection(url, header=[f"Cookie: {cookies}", f"X-XSRFToken: {xsrf}"], origin=origin,
                                         timeout=timeout, sslopt=sslopt, suppress_origin=False)
        try:
            ws.send(json.dumps({
                "header": {"msg_id": mid, "username": user, "session": sid, "msg_type": "execute_request",
                           "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            out, error, replied, idle = [], "", False, False
            deadline = time.monotonic() + timeout
            while not (replied and idle):
                if time.monotonic() > deadline:
                    raise VerificationError(f"kernel {kernel}: no reply within {timeout:g} s")
                msg = json.loads(ws.recv())
                if (msg.get("parent_header") or {}).get("msg_id") != mid:
                    continue
                kind, content = msg["header"]["msg_type"], msg.get("content") or {}
                if kind == "stream" and content.get("name") == "stdout":
                    out.append(content.get("text", ""))
                elif kind == "error":
                    error = f"{content.get('ename')}: {content.get('evalue')}"
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        finally:
            ws.close()
        if error:
            raise VerificationError(f"kernel {kernel}: the check itself failed: {error}")
        return "".join(out)
    finally:
        session.delete(f"{api}/{kid}", headers={"X-XSRFToken": xsrf}, timeout=timeout)


def _verifiable_user(params) -> str | None:
    ours = read_registry(params) if params.layout.user_registry.exists() else {}
    return next((n for n in [*params.users, *params.admin_users] if n in ours or n in params.passwords), None)


def _rows(kernel: str, results: dict[str, str], how: str) -> list[tuple[str, str, str]]:
    return [(f"{kernel}: {name}", OK if r.startswith("ok") else FAILED, f"{r} ({how})") for name, r in results.items()]


def imports_as_nobody(params) -> list[tuple[str, str, str]]:
    """The import check with each env's python as the account nobody (no hub needed). Read-only."""
    rows = []
    for kernel, names in kernels_to_check(params).items():
        env = params.layout.userenv_dir if kernel == "python3" else params.layout.user_kernel_dir(kernel)
        ok, out = build.runs_as_user(env, import_code(names))
        if not ok:
            rows.append((f"{kernel}: all", FAILED, out))
            continue
        rows += _rows(kernel, parse_imports(out), "as nobody")
    return rows


def check_user_imports(params, *, dry_run: bool = False) -> StepResult:
    """Spawn a server as the first user through the hub and import every listed package in each kernel (the user
    env's python3 and every extra kernel) as that user. Without a running hub yet, the imports run as nobody.

    Side effects: starts the user's server (stopped again unless it was running) and a kernel per spec (stopped)."""
    if dry_run:
        return StepResult("check_user_imports", SKIPPED, "dry run: nothing was built, so nothing to verify")
    healthy, _ = hub_api_ok(params.public_url)
    user = _verifiable_user(params)
    if not healthy or user is None:
        rows = imports_as_nobody(params)
        why = "no hub answers yet" if not healthy else "no user whose password is known"
        failed = [r[0] for r in rows if r[1] == FAILED]
        status = FAILED if failed else OK
        return StepResult("check_user_imports", status, (f"{len(failed)} import(s) failed: {', '.join(failed)}" if failed
                          else f"{len(rows)} package(s) import as nobody") + f" ({why}: configure.ipynb repeats this "
                          "in a kernel of a spawned server)", rows)
    url, rows = params.public_url, []
    try:
        session = probe.login(url, user, user_password(params, user))
        started = not probe.server_ready(session, url, user)
        seconds = probe.start_server(session, url, user) if started else 0.0
        rows.append((f"{user}'s server", OK, f"ready after {seconds:.1f} s" if started else "already running"))
        try:
            for kernel, names in kernels_to_check(params).items():
                try:
                    out = execute_in_kernel(session, url, user, kernel, import_code(names))
                    rows += _rows(kernel, parse_imports(out), f"in a {kernel} kernel as {user}")
                except (RunbookError, requests.RequestException, OSError, ValueError) as exc:
                    rows.append((f"{kernel}: all", FAILED, f"{type(exc).__name__}: {exc}"))
                except Exception as exc:  # websocket's own errors
                    rows.append((f"{kernel}: all", FAILED, f"{type(exc).__name__}: {exc}"))
        finally:
            if started:
                probe.stop_server(session, url, user)
    except (RunbookError, requests.RequestException) as exc:
        rows.append(("spawn", FAILED, str(exc)))
    failed = [r[0] for r in rows if r[1] == FAILED]
    if failed:
        return StepResult("check_user_imports", FAILED, f"{len(failed)} check(s) failed: {', '.join(failed)}", rows)
    return StepResult("check_user_imports", OK, f"{user} spawned; {len(rows) - 1} package(s) import in "
                      f"{len(kernels_to_check(params))} kernel(s) as {user}", rows)
