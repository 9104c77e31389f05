"""The parts an upgrade replaces: what is installed now, what the parameters want, building the new parts next to
the live ones and swapping them in (and back) by rename.

A venv's scripts carry the absolute path of the interpreter they were installed for in their ``#!`` line. An env
built at ``env.new`` and renamed to ``env`` would run a Python that no longer exists, so the swap rewrites that path
in the env's ``bin/`` scripts and ``pyvenv.cfg`` (:func:`retarget`). The env it replaced was built at ``env``: once
renamed back by a rollback it is right again without any rewrite. An npm prefix holds no absolute path of its own.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from hubrunbook.core.errors import CommandError, PreflightError
from hubrunbook.core.shell import run_command
from hubrunbook.host.system import make_world_readable
from hubrunbook.hub import hubenv, hubguard, proxy
from hubrunbook.hub.node import choose_node, node_env, npm_command

PYTHON_PARTS = ("jupyterhub", "oauthenticator", "jupyterhub-idle-culler", "jupyterhub-systemdspawner")  # the hub env; jupyterlab is the user env's
PARTS = (*PYTHON_PARTS, "proxy")


def installed(params, env: Path | None = None) -> dict[str, str | None]:
    """{part: version or None} of the live env (or *env*) and the installed proxy."""
    have = hubenv.installed_versions(env or params.layout.env_dir, list(PYTHON_PARTS))
    return {**have, "proxy": proxy.installed_version(params)}


def wanted(params, have: dict) -> dict[str, str | None]:
    """The parameters' versions; oauthenticator (oauth.ipynb installs it) and jupyterhub-systemdspawner only where
    installed."""
    return {"jupyterhub": params.jupyterhub_version,
            "oauthenticator": params.oauthenticator_version if have.get("oauthenticator") else None,
            "jupyterhub-idle-culler": params.idle_culler_version,  # install.ipynb installs it (the culling service)
            # install.ipynb installs it (limits.py); carried over, like oauthenticator, where it is installed
            "jupyterhub-systemdspawner": params.systemdspawner_version if have.get("jupyterhub-systemdspawner") else None,
            "proxy": params.proxy_version}


def changes(have: dict, want: dict) -> dict[str, tuple[str | None, str | None]]:
    """{part: (installed, wanted)} of the parts whose version differs."""
    return {p: (have.get(p), want.get(p)) for p in PARTS if have.get(p) != want.get(p)}


def env_changes(todo: dict) -> bool:
    return any(p in todo for p in PYTHON_PARTS)


def older(have: str | None, want: str | None) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return bool(have and want) and Version(want) < Version(have)
    except InvalidVersion:
        return False


# --- building next to the live parts ---------------------------------------------------------------------------
def build_env(params, want: dict, *, progress=None) -> str:
    """A complete hub env at env.new with the wanted versions, from the interpreter the live one uses; verified by
    its versions and `jupyterhub --version`; completion marker written last. Returns what it holds."""
    new = params.layout.env_new_dir
    specs = [f"{p}=={want[p]}" for p in PYTHON_PARTS if want.get(p)]
    hubenv.create_venv(params, new)
    hubenv.install_packages(params, new, specs, progress=progress)
    make_world_readable(new)  # spawned users run it
    got = hubenv.installed_versions(new, [p for p in PYTHON_PARTS if want.get(p)])
    bad = {p: v for p, v in got.items() if v != want[p]}
    if bad:
        raise CommandError(f"the new env {new} holds {', '.join(f'{p} {v}' for p, v in bad.items())}, not the wanted "
                           f"{', '.join(f'{p} {want[p]}' for p in bad)}")
    guard = ""
    if (hubguard.hub_site_packages(params) / f"{hubguard.HUB_MODULE}.py").exists():  # configure.ipynb wrote it
        hubguard.ensure_hub_module(params, env=new)  # the config names its classes: the new hub imports them
        guard = f", {hubguard.HUB_MODULE}.py"
    version = run_command([new / "bin" / "jupyterhub", "--version"], timeout=120, what="jupyterhub --version (new env)")
    marker = {"python": str(hubenv.hub_python(params)), "jupyterhub": want["jupyterhub"]}
    import json

    params.layout.env_marker_in(new).write_text(json.dumps(marker) + "\n")
    left = sorted(set(distributions(params.layout.env_dir, leaves=True)) - set(distributions(new)) - {"pip", "setuptools", "wheel"})
    note = f"; not carried over from the old env (install them again if the hub needs them): {', '.join(left)}" if left else ""
    return f"{new}: {', '.join(specs)}{guard} (jupyterhub --version: {version.stdout.strip()}){note}"


LEAVES = r"""
import importlib.metadata as m, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = {norm(d.metadata["Name"]): d for d in m.distributions()}
needed = {norm(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]) for d in dists.values() for r in (d.requires or []) if "extra ==" not in r}
want = sys.argv[1] == "leaves"
print("\n".join(sorted(n for n in dists if not want or n not in needed)))
"""


def distributions(env: Path, *, leaves: bool = False) -> list[str]:
    """Names (normalised) of the packages in the venv *env*; *leaves*: only those no other package requires (what
    somebody installed on purpose)."""
    out = run_command([env / "bin" / "python", "-c", LEAVES, "leaves" if leaves else "all"], timeout=60,
                      what=f"packages in {env}")
    return out.stdout.split()


def build_proxy(params, version: str) -> str:
    """configurable-http-proxy *version* in the private npm prefix proxy.new, proven by `--version`."""
    new = params.layout.proxy_new_dir
    new.mkdir(parents=True, exist_ok=True)
    npm_install_proxy(params, version, new)
    make_world_readable(new)
    _, node, _ = choose_node(params)
    script = new / "node_modules" / proxy.PKG / "bin" / proxy.PKG
    got = run_command([node, script, "--version"], timeout=60, what="configurable-http-proxy --version (new)").stdout.strip()
    if got != version:
        raise CommandError(f"npm installed {proxy.PKG} into {new} but `--version` says {got!r}, expected {version}")
    return f"{new}: configurable-http-proxy {version}"


def npm_install_proxy(params, version: str, prefix: Path | None) -> None:
    """npm install configurable-http-proxy@*version* into *prefix* (None: npm's global prefix)."""
    args = [*npm_command(params), "install", "--no-fund", "--no-audit", "--loglevel=error"]
    args += ["--prefix", prefix] if prefix else ["-g"]
    run_command(args + [f"{proxy.PKG}@{version}"], timeout=300, env=node_env(params),
                what=f"npm install {proxy.PKG}@{version}")


def schema_head(env: Path) -> str | None:
    """The newest database schema revision the jupyterhub in the venv *env* knows (hub/database.py's alembic_head)."""
    from hubrunbook.hub.database import alembic_head

    out = run_command([env / "bin" / "python", "-c", "import os, jupyterhub; print(os.path.dirname(jupyterhub.__file__))"],
                      timeout=60, what=f"locate jupyterhub in {env}")
    head = alembic_head(out.stdout.strip())
    if not head:
        raise CommandError(f"cannot tell the database schema revision of the jupyterhub in {env} (no single alembic head)")
    return head


def remove_tree(path: Path) -> None:
    """Remove an upgrade's directory under the prefix (a symlink is refused, never followed)."""
    if path.is_symlink():
        raise PreflightError(f"{path} is a symlink, not a directory an upgrade made; move it away")
    if path.exists():
        shutil.rmtree(path)


def remove_built(params) -> list[str]:
    """Remove env.new and proxy.new (only ever made by an upgrade). Returns what was removed."""
    gone = []
    for path in (params.layout.env_new_dir, params.layout.proxy_new_dir):
        if path.is_symlink():
            raise PreflightError(f"{path} is a symlink, not a directory an upgrade built; move it away")
        if path.exists():
            shutil.rmtree(path)
            gone.append(str(path))
    return gone


# --- the swap -------------------------------------------------------------------------------------------------
def swap_in(live: Path, new: Path, prev: Path) -> None:
    """live → prev, new → live: two renames in one directory (each atomic; the journal records that it began)."""
    if prev.exists() or prev.is_symlink():
        raise PreflightError(f"{prev} exists: an earlier upgrade left it; its rollback must run first")
    os.rename(live, prev)
    os.rename(new, live)


def swap_back(live: Path, prev: Path) -> bool:
    """Put prev back as live (the new one at live is removed). False when there is no prev to put back."""
    if not prev.is_dir() or prev.is_symlink():
        return False
    if live.is_symlink():
        live.unlink()
    elif live.exists():
        shutil.rmtree(live)
    os.rename(prev, live)
    return True


def retarget(env: Path, built_at: Path) -> int:
    """Rewrite *built_at* to *env* in the venv's bin/ scripts and pyvenv.cfg (not through symlinks; binaries left
    alone). Returns how many files changed."""
    old, new = str(built_at).encode(), str(env).encode()
    files = [env / "pyvenv.cfg", *sorted((env / "bin").iterdir())]
    n = 0
    for path in files:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data and b"\0" not in data[:4096]:
            path.write_bytes(data.replace(old, new))  # same inode: mode and owner stay
            n += 1
    return n
