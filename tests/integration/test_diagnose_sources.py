"""The troubleshoot catalog against the real JupyterHub 6 code in the shared hub env (built by the fixture)."""
from __future__ import annotations

import json

import pytest

from hubrunbook.hub import configload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jupyter_server_src(shared_install):
    """jupyter_server (the single-user server) in the shared user env: the hub env holds jupyterhub only."""
    (src,) = shared_install.layout.userenv_dir.glob("lib/python3*/site-packages/jupyter_server")
    return src


@pytest.fixture(scope="module")
def jupyterhub_src(shared_install):
    """The jupyterhub package directory of the shared installed hub env."""
    (src,) = shared_install.layout.env_dir.glob("lib/python3*/site-packages/jupyterhub")
    return src


SOURCE_TEXTS = {
    "proxy-api-403": "api_request to proxy failed: {e}",
    "hub-bind-failed": "Failed to bind hub to %s",
    "no-allow-config": "No allow config found, it's possible that nobody can login to your Hub!",
    "singleuser-permission": "Permission denied trying to run %r. Does %s have access to this file?",
    "spawn-timeout": "server failed to start",
    "spawner-failed": "Spawner failed to start [status={status}]",
    "db-schema": "Found database schema version {alembic_revision} != {head}. ",
    "db-connect": "Failed to connect to db: %s",
    "proxy-not-found": "Failed to find proxy {self.command!r}",
    "proxy-exit": "Proxy failed to start with exit code {status}",
    "cookie-secret": "Refusing to run JupyterHub with invalid cookie_secret_file. ",
}


SOURCE_TEXTS["notebook-dir-missing"] = "No such directory: '%r'"  # jupyter_server, the single-user server


@pytest.mark.parametrize("mid,text", sorted(SOURCE_TEXTS.items()))
def test_log_texts_exist_in_jupyterhub_source(mid, text, jupyterhub_src, jupyter_server_src):
    JH_SRC = jupyterhub_src
    pkgs = [JH_SRC, jupyter_server_src]
    src = "\n".join(p.read_text(errors="replace") for d in pkgs for p in d.rglob("*.py") if "tests" not in p.parts)
    assert text in src, f"{mid}: {text!r} is not in jupyterhub's source"


# --- log scan ------------------------------------------------------------------------------------


def test_known_mros_are_the_real_ones(jupyterhub_src):
    JH_SRC = jupyterhub_src
    import subprocess

    py = JH_SRC.parents[3] / "bin" / "python"
    names = [n for n in configload.KNOWN_MRO if n.startswith("jupyterhub.")]
    code = ("import importlib, json, sys\nfrom traitlets.config import Configurable\nout = {}\n"
            "for n in sys.argv[1:]:\n    m, _, a = n.rpartition('.')\n    k = getattr(importlib.import_module(m), a)\n"
            "    out[n] = [c.__name__ for c in k.__mro__ if issubclass(c, Configurable) and c.__name__ not in "
            "('Configurable', 'LoggingConfigurable')]\nprint(json.dumps(out))")
    real = json.loads(subprocess.run([py, "-c", code, *names], capture_output=True, text=True, check=True).stdout)
    assert real == {n: configload.KNOWN_MRO[n] for n in names}
