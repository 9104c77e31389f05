"""Checks of the limits per user (hub/limits.py): are they enforced on this server, and was a server killed by its
memory limit."""
from __future__ import annotations

from hubrunbook.core.errors import PreflightError
from hubrunbook.hub import limits
from hubrunbook.troubleshoot import repairs
from hubrunbook.troubleshoot.catalog import ERROR, INFO, WARNING, Check, Context, Finding, register

OOM_SINCE = "-24h"


def _limits(ctx: Context):
    """The limits the parameters give here, or None when they are refused here (configure's preflight says why)."""
    try:
        return ctx.fact("limits", lambda: limits.resolve_limits(ctx.params))
    except PreflightError:
        return None


def check_limits_enforced(ctx: Context) -> list[Finding]:
    """Limits configured but not enforced by the kernel (a short probe unit allocates past a small MemoryMax), or no
    limits at all here. Starts one short transient unit where systemd is PID 1; changes nothing else."""
    lim = _limits(ctx)
    if lim is None:
        return []
    if lim.spawner != "systemd":
        return [LIMITS.finding(
            INFO, "no limits per user on this server: NOT enforced", f"servers run as the hub's children: {lim.why_not}",
            id="limits-none", title="no memory or CPU limit per user here",
            cause="limits per user need each server to run as a systemd unit (systemd as PID 1, the hub its unit)",
            fix="run the hub on a server booted with systemd (service: 'auto'); until then one user's notebook can "
                "take all memory")]
    if not lim.mem_mib and not lim.cpu:
        return []
    probe = ctx.fact("limits_probe", limits.memory_probe)
    if probe.enforced:
        return []
    return [LIMITS.finding(
        WARNING, f"limits per user are set ({lim.summary().split(': ', 1)[1]}) but {probe.text()}",
        probe.evidence or probe.detail, id="limits-not-enforced")]


LIMITS = register(Check(
    "limits-not-enforced", "limits per user are configured but the kernel does not enforce them",
    "systemctl show jupyterhub-singleuser-demo.service → MemoryMax=2147483648, yet a notebook holds 5 GiB; the probe: "
    "160 MiB allocated in a transient unit with MemoryMax=32M survived",
    "systemd records MemoryMax/CPUQuota on each server's unit, but cannot apply them: the cgroup controllers are "
    "read-only or missing (a container such as systemd-nspawn or LXC without delegated controllers, or a kernel "
    "without the memory controller)",
    "run the hub on a VM or bare-metal server where systemd manages the cgroups (cgroup v2 is the default of Debian "
    "12), or delegate the memory and cpu controllers to the container; until then one user's notebook can take all "
    "memory",
    check_limits_enforced, stage="hub"))


def check_oom_killed(ctx: Context) -> list[Finding]:
    """Servers whose unit the kernel killed for its memory in the last day: systemd's and the kernel's journal lines."""
    from hubrunbook.host import systemd

    if not systemd.booted():
        return []
    lines = ctx.fact("oom_lines", lambda: limits.oom_journal_lines(ctx.params, since=OOM_SINCE))
    lim = _limits(ctx)
    mem = f"mem_limit {limits.mib_text(lim.mem_mib)}" if lim and lim.mem_mib else "its memory limit"
    return [OOM.finding(
        WARNING, f"the server of {user} was killed by {mem} (in the last 24 hours)", line, id="server-oom-killed",
        cause=f"a notebook or process of {user} allocated past {mem}: the kernel killed it and systemd stopped the "
              "server (OOMPolicy=stop); the hub shows it stopped, other users were not touched", user=user)
        for user, line in sorted(limits.oom_kills(lines, ctx.params.service_name).items())]


OOM = register(Check(
    "server-oom-killed", "a user's server was killed by its memory limit",
    "journalctl -u jupyterhub-singleuser-demo → jupyterhub-singleuser-demo.service: A process of this unit has been "
    "killed by the OOM killer.",
    "a notebook allocated more than mem_limit (MemoryMax of the user's unit); the kernel killed it and systemd stopped "
    "the server, so the user found it stopped",
    "the user starts the server again (Home → Start My Server) and loads less (smaller data, `del`, restart kernels); "
    "if the work needs more, raise mem_limit (or lower expected_users for 'auto') and re-run configure.ipynb",
    check_oom_killed, stage="log"))


def check_systemdspawner(ctx: Context) -> list[Finding]:
    """Where servers run as systemd units, the hub env must hold jupyterhub-systemdspawner (the config names it)."""
    from hubrunbook.hub.hubenv import installed_versions

    lim = _limits(ctx)
    env = ctx.params.layout.env_dir
    if lim is None or lim.spawner != "systemd" or not (env / "bin" / "python").exists():
        return []
    have = installed_versions(env, ["jupyterhub-systemdspawner"]).get("jupyterhub-systemdspawner")
    if have:
        return []
    return [SPAWNER.finding(
        ERROR, f"the hub env {env} has no jupyterhub-systemdspawner, but servers run as systemd units here",
        f"{env / 'bin' / 'python'}: importlib.metadata.version('jupyterhub-systemdspawner') → not installed")]


SPAWNER = register(Check(
    "systemdspawner-missing", "jupyterhub-systemdspawner is missing from the hub env",
    "AttributeError: module 'hubrunbook_hub_auth' has no attribute 'SystemdSpawner' (the hub exits at start)",
    "the hub env was built before limits per user, or the package was removed; the config names "
    "hubrunbook_hub_auth.SystemdSpawner, which exists only with it",
    "re-run install.ipynb, or troubleshoot with apply_fixes: installs the pinned systemdspawner_version into the hub env",
    check_systemdspawner, repairs.repair_hub_env, stage="install"))
