"""A small GitHub-compatible OAuth server for tests (stdlib only, loopback).

It answers exactly what oauthenticator 17's GitHubOAuthenticator calls, under
both github.com-style paths and GitHub Enterprise's ``/api/v3`` prefix:

- ``GET  /login/oauth/authorize``   auto-approves as ``?login=`` (test clients add it) or the default user;
                                    stores the PKCE code_challenge
- ``POST /login/oauth/access_token`` form-body client_id/client_secret/code/code_verifier; a wrong
                                    secret gets GitHub's HTTP 200 ``incorrect_client_credentials``
- ``GET  /user``, ``/user/orgs``, ``/user/emails``, ``/orgs/<org>/members/<user>``,
  ``/orgs/<org>/teams/<team>/members/<user>`` (204 member, 404 not)

Run in a thread: ``srv = FakeGitHub(client_id, secret, users).start()``; ``srv.url``; ``srv.stop()``.
Or standalone: ``python tests/fakegithub.py --port N --client-id ID --users users.json``
with the secret in the environment variable FAKEGITHUB_CLIENT_SECRET.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class GitHubUser:
    login: str
    id: int
    orgs: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)  # "org:team"
    email: str | None = None


@dataclass
class FakeGitHub:
    client_id: str
    client_secret: str
    users: dict[str, GitHubUser]
    default_user: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    log: list[str] = field(default_factory=list)  # "METHOD path status", for assertions

    def __post_init__(self):
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}  # access token -> login
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeGitHub":
        srv = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        srv.daemon_threads = True
        self.port = srv.server_address[1]
        self._server = srv
        threading.Thread(target=srv.serve_forever, name="fakegithub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def user(self, login: str) -> GitHubUser | None:
        """GitHub logins are case-insensitive."""
        for u in self.users.values():
            if u.login.lower() == login.lower():
                return u
        return None


def _pkce_ok(challenge: str | None, method: str | None, verifier: str | None) -> bool:
    if not challenge:
        return True  # PKCE not used for this code
    if not verifier:
        return False
    if (method or "plain") == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=") == challenge
    return verifier == challenge


def _make_handler(gh: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeGitHub/1"

        def log_message(self, fmt, *args):  # quiet; requests are recorded in gh.log
            pass

        def _send(self, status: int, body=None, headers: dict | None = None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            gh.log.append(f"{self.command} {urlsplit(self.path).path} {status}")

        def _api_path(self) -> str:
            path = urlsplit(self.path).path
            return path[len("/api/v3"):] if path.startswith("/api/v3/") else path

        def _token_user(self) -> GitHubUser | None:
            auth = self.headers.get("Authorization", "")
            m = re.match(r"^(?:token|bearer)\s+(\S+)$", auth, re.I)
            login = gh.tokens.get(m.group(1)) if m else None
            return gh.user(login) if login else None

        # -- OAuth --------------------------------------------------------------
        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path == "/login/oauth/authorize":
                return self._authorize(parse_qs(parts.query))
            me = self._token_user()
            if me is None:
                return self._send(401, {"message": "Requires authentication"})
            path = self._api_path()
            if path == "/user":
                return self._send(200, {"login": me.login, "id": me.id, "name": me.login.title(), "email": me.email})
            if path == "/user/orgs":
                return self._send(200, [{"login": o, "id": i} for i, o in enumerate(me.orgs, 1)])
            if path == "/user/emails":
                return self._send(200, [{"email": me.email or f"{me.login}@example.org", "primary": True}])
            if m := re.match(r"^/orgs/([^/]+)/members/([^/]+)$", path):
                member = gh.user(m.group(2))
                ok = member is not None and m.group(1).lower() in (o.lower() for o in member.orgs)
                return self._send(204) if ok else self._send(404, {"message": "User does not exist or is not a member of the organization"})
            if m := re.match(r"^/orgs/([^/]+)/teams/([^/]+)/members/([^/]+)$", path):
                member = gh.user(m.group(3))
                want = f"{m.group(1)}:{m.group(2)}".lower()
                ok = member is not None and want in (t.lower() for t in member.teams)
                return self._send(204) if ok else self._send(404, {"message": "Not Found"})
            return self._send(404, {"message": "Not Found"})

        def _authorize(self, q: dict[str, list[str]]):
            arg = lambda k: (q.get(k) or [None])[0]
            if arg("client_id") != gh.client_id:
                return self._send(404, {"message": "Not Found (unknown client_id)"})
            redirect = arg("redirect_uri")
            if not redirect:
                return self._send(400, {"message": "redirect_uri missing"})
            login = arg("login") or gh.default_user
            user = gh.user(login) if login else None
            if user is None:
                return self._send(404, {"message": f"no such test user {login!r}"})
            code = secrets.token_hex(10)
            with gh._lock:
                gh.codes[code] = {
                    "login": user.login, "client_id": arg("client_id"), "redirect_uri": redirect,
                    "challenge": arg("code_challenge"), "method": arg("code_challenge_method"), "scope": arg("scope") or "",
                }
            query = urlencode({"code": code, **({"state": arg("state")} if arg("state") else {})})
            sep = "&" if "?" in redirect else "?"
            self._send(302, None, {"Location": f"{redirect}{sep}{query}"})

        def do_POST(self):
            if urlsplit(self.path).path != "/login/oauth/access_token":
                return self._send(404, {"message": "Not Found"})
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            # GitHub answers OAuth errors with HTTP 200 and an error object
            if form.get("client_id") != gh.client_id or form.get("client_secret") != gh.client_secret:
                return self._send(200, {
                    "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect.",
                    "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials",
                })
            with gh._lock:
                grant = gh.codes.pop(form.get("code", ""), None)
            bad_code = {
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
                "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
            }
            if grant is None or grant["client_id"] != form.get("client_id"):
                return self._send(200, bad_code)
            if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
                return self._send(200, {"error": "redirect_uri_mismatch", "error_description": "The redirect_uri MUST match the registered callback URL for this application."})
            if not _pkce_ok(grant["challenge"], grant["method"], form.get("code_verifier")):
                return self._send(200, bad_code)
            token = "gho_" + secrets.token_hex(16)
            gh.tokens[token] = grant["login"]
            self._send(200, {"access_token": token, "token_type": "bearer", "scope": grant["scope"].replace(" ", ",")})

    return Handler


def main() -> None:  # pragma: no cover - manual use
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--users", help="JSON file: {login: {id, orgs, teams}}")
    a = ap.parse_args()
    users = {}
    if a.users:
        for login, u in json.loads(open(a.users).read()).items():
            users[login] = GitHubUser(login=login, **u)
    gh = FakeGitHub(a.client_id, os.environ["FAKEGITHUB_CLIENT_SECRET"], users, port=a.port).start()
    print(gh.url, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    main()
