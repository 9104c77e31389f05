"""configurable-http-proxy from npm: a pinned version in a private or the global prefix."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import CommandError
from .node import choose_node, node_env, npm_command
from .shell import run_command
from .steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

PKG = "configurable-http-proxy"


def npm_prefix(params) -> Path:
    """npm prefix the proxy is installed into."""
    if params.proxy_install == "private":
        return params.root / "proxy"
    out = run_command(npm_command(params) + ["prefix", "-g"], timeout=30, env=node_env(params), what="npm prefix -g")
    return Path(out.stdout.strip())


def package_dir(params) -> Path:
    base = npm_prefix(params)
    return base / "node_modules" / PKG if params.proxy_install == "private" else base / "lib" / "node_modules" / PKG


def proxy_command(params) -> list[str]:
    """The proxy command for c.ConfigurableHTTPProxy.command: [real node binary, chp script] (no PATH lookup, no
    launcher in between: the PID the hub records is the process that holds the port)."""
    _, node, _ = choose_node(params)
    return [str(node), str(package_dir(params) / "bin" / PKG)]


def installed_version(params) -> str | None:
    """Version of the installed proxy package from its package.json, or None."""
    try:
        return json.loads((package_dir(params) / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def proxy_runs(params) -> str | None:
    """`configurable-http-proxy --version` output, or None when it does not run."""
    try:
        return run_command(proxy_command(params) + ["--version"], timeout=30, what="configurable-http-proxy --version").stdout.strip()
    except CommandError:
        return None


def ensure_proxy(params, *, dry_run: bool = False) -> StepResult:
    """Install configurable-http-proxy==proxy_version with npm and verify `--version`. Idempotent."""
    want = params.proxy_version
    where = package_dir(params)
    have = installed_version(params)
    if have == want and proxy_runs(params) == want:
        return StepResult("ensure_proxy", UNCHANGED, f"configurable-http-proxy {want} in {where}")
    if dry_run:
        return StepResult("ensure_proxy", WOULD_CHANGE, f"would npm install {PKG}@{want} into {where} (now: {have or 'absent'})")
    args = [*npm_command(params), "install", "--no-fund", "--no-audit", "--loglevel=error"]
    if params.proxy_install == "private":
        prefix = npm_prefix(params)
        prefix.mkdir(parents=True, exist_ok=True)
        args += ["--prefix", prefix]
    else:
        args += ["-g"]
    run_command(args + [f"{PKG}@{want}"], timeout=300, env=node_env(params), what=f"npm install {PKG}@{want}")
    got = proxy_runs(params)
    if got != want:
        raise CommandError(f"npm installed {PKG} but `--version` says {got!r}, expected {want}")
    return StepResult("ensure_proxy", CHANGED, f"installed configurable-http-proxy {want} in {where} (was: {have or 'absent'})")
