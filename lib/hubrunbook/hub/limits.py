"""Memory and CPU limits for each user's server (issue 13): systemd's resource control, through
jupyterhub-systemdspawner, where systemd is PID 1.

- Where the hub runs as a systemd unit (systemd is PID 1 and ``service`` is not 'process'), every user's server is a
  transient unit of its own (``<service_name>-singleuser-<user>.service``, started by ``systemd-run`` as the user, in
  the user's home, with the same ``Spawner.cmd``), with ``MemoryMax`` from ``mem_limit`` and ``CPUQuota`` from
  ``cpu_limit``. ``OOMPolicy=stop``: when the kernel kills a process of the unit for its memory, the whole server
  stops and the hub shows it stopped (systemdspawner's default, ``continue``, would leave a server with a dead kernel
  and nothing in the hub); the user starts it again. ``MemorySwapMax=0`` with a memory limit: a runaway is killed at
  the limit instead of filling the swap (which slows everyone down).
- Elsewhere servers are the hub's children (JupyterHub's LocalProcessSpawner) and nothing limits them: an explicit
  ``mem_limit`` or ``cpu_limit`` is refused before anything changes, and ``mem_limit: 'auto'`` means no limit, with a
  warning in the step result.
- ``mem_limit: 'auto'`` = (RAM − headroom) / ``expected_users``, headroom = max(1 GiB, 10 % of RAM) for the OS, the hub
  and the proxy, rounded down to 64 MiB, at least 512 MiB (a JupyterLab server with one kernel that imports the
  usual packages). A limit is a cap, not a reservation: idle users leave their share to nobody, so with
  ``expected_users`` users all at their limit the machine still keeps the headroom.
- A unit carrying MemoryMax does not prove the kernel applies it: inside systemd-nspawn the cgroup v1 memory and cpu
  hierarchies are mounted read-only, and a 300 MB allocation under ``MemoryMax=50M`` survived. So
  :func:`memory_probe` allocates past a small MemoryMax in a transient unit: killed = enforced.
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.steps import FAILED, OK, SKIPPED, StepResult

SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT])$")
SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}  # JupyterHub's ByteSpecification: powers of 1024
NO_LIMIT = ("", "unlimited")
MIN_MEM_MIB = 128  # a JupyterLab server alone holds ~82 MiB RSS (capacity.py): below this it cannot start
MAX_CPU = 1024.0
HEADROOM_MIB, HEADROOM_SHARE = 1024, 0.10  # kept for the OS, the hub and the proxy by mem_limit 'auto'
AUTO_FLOOR_MIB = 512  # 'auto' never gives less: a server and a kernel that imports numpy/pandas
AUTO_STEP_MIB = 64
OOM_POLICY = "stop"
UNIT_TEMPLATE = "{service}-singleuser-{{USERNAME}}"
SYSTEMD_SPAWNER = "hubrunbook_hub_auth.SystemdSpawner"  # hubguard.py: systemdspawner's, with the account guard


# --- parameters (pure) ---------------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """Bytes of a size such as '512M', '2G', '1.5G' (K, M, G, T: powers of 1024, as JupyterHub reads them)."""
    m = SIZE_RE.match(text.strip().upper()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2)])


def check_mem_limit(value) -> str:
    """The mem_limit parameter: 'auto', '' / 'unlimited', or a size of at least MIN_MEM_MIB; normalised ('2g' → '2G')."""
    if not isinstance(value, str):
        raise ValueError(f"mem_limit must be a quoted string such as '2G', 'auto' or 'unlimited'; got {value!r}")
    if value in ("auto", *NO_LIMIT):
        return value
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError(f"mem_limit must be 'auto', '' or 'unlimited' (no limit), or a size: a number with K, M, G or "
                         f"T (powers of 1024) such as '512M', '2G' or '1.5G'; got {value!r}") from None
    if size < MIN_MEM_MIB * 2**20:
        raise ValueError(f"mem_limit {value!r} is below {MIN_MEM_MIB}M: a JupyterLab server alone needs about 100 MiB, "
                         "it would be killed as it starts")
    return value.strip().upper()


def check_cpu_limit(value) -> float:
    """The cpu_limit parameter: 0 (none) or cores from 0.01 to MAX_CPU, such as 0.5 or 1.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"cpu_limit must be a number of cores such as 1.5, or 0 for no limit; got {value!r}")
    if value != 0 and not 0.01 <= value <= MAX_CPU:
        raise ValueError(f"cpu_limit must be 0 (no limit) or from 0.01 to {MAX_CPU:g} cores; got {value!r}")
    return float(value)


def auto_mem_mib(total_mib: int, expected_users: int) -> tuple[int, str]:
    """mem_limit 'auto': (RAM − headroom) / expected_users, down to AUTO_STEP_MIB, at least AUTO_FLOOR_MIB; with how."""
    headroom = max(HEADROOM_MIB, int(total_mib * HEADROOM_SHARE))
    share = max(total_mib - headroom, 0) // expected_users // AUTO_STEP_MIB * AUTO_STEP_MIB
    how = (f"auto: ({total_mib} MiB RAM − {headroom} MiB headroom) / {expected_users} expected users"
           f" = {share} MiB")
    if share < AUTO_FLOOR_MIB:
        return AUTO_FLOOR_MIB, how + (f", raised to the floor of {AUTO_FLOOR_MIB} MiB (the machine is small for "
                                      f"{expected_users} users at once)")
    return share, how


def mib_text(mib: int) -> str:
    """'2G' for 2048, '2176M' for 2176: the config's value, in JupyterHub's units."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


# --- what applies here -------------------------------------------------------------------------------------------
def why_no_systemd(params) -> str | None:
    """Why servers cannot run as systemd units with limits here, or None when they can. Read-only."""
    from hubrunbook.host import systemd

    if params.service == "process":
        return "the hub runs as a managed process (service: 'process'), not as a systemd unit"
    if not systemd.booted():
        return "systemd is not PID 1 on this machine (/run/systemd/system is missing)"
    return None


@dataclass(frozen=True)
class Limits:
    """The limits each user's server gets on this machine with these parameters."""

    spawner: str                      # "systemd" (one unit per server) or "local" (the hub's children)
    mem_mib: int | None               # None: no memory limit
    cpu: float | None                 # cores; None: no CPU limit
    mem_how: str                      # where mem_mib comes from
    why_not: str | None = None        # why there are no units here
    warnings: tuple[str, ...] = field(default=())

    @property
    def mem_bytes(self) -> int | None:
        return None if self.mem_mib is None else self.mem_mib * 2**20

    def summary(self) -> str:
        if self.spawner != "systemd":
            return f"limits per user: none ({self.why_not})" + "".join(f"; WARNING: {w}" for w in self.warnings)
        mem = f"memory {mib_text(self.mem_mib)} ({self.mem_how})" if self.mem_mib else "memory unlimited"
        cpu = f"CPU {self.cpu:g} cores" if self.cpu else "CPU unlimited"
        return f"limits per user (systemd units): {mem}, {cpu}" + "".join(f"; WARNING: {w}" for w in self.warnings)


def resolve_limits(params, *, why_not: str | None | bool = False, total_mib: int | None = None) -> Limits:
    """The limits for *params* on this machine. Raises PreflightError when mem_limit or cpu_limit is set explicitly
    where nothing can enforce it (refused, not ignored). *why_not*/*total_mib* replace the machine's facts (tests)."""
    reason = why_no_systemd(params) if why_not is False else why_not
    explicit = []
    if params.mem_limit not in ("auto", *NO_LIMIT):
        explicit.append(f"mem_limit {params.mem_limit!r}")
    if params.cpu_limit:
        explicit.append(f"cpu_limit {params.cpu_limit:g}")
    if reason:
        if explicit:
            raise PreflightError(
                f"{' and '.join(explicit)} cannot be enforced here: {reason}; limits per user need each server to run "
                "as a systemd unit. Nothing was changed. Fix: mem_limit: 'auto' (or '') and cpu_limit: 0 on this "
                "machine, or run the hub under systemd (a server booted with systemd, service: 'auto')")
        warn = ()
        if params.mem_limit == "auto":
            warn = (f"mem_limit 'auto' means no memory limit here ({reason}): one user's runaway notebook can take "
                    "all memory",)
        return Limits("local", None, None, "none", reason, warn)
    if params.mem_limit == "auto":
        from hubrunbook.hub.capacity import machine_size

        mem, how = auto_mem_mib(total_mib if total_mib is not None else machine_size()[1], params.expected_users)
        warn = ()
    elif params.mem_limit in NO_LIMIT:
        mem, how = None, "mem_limit " + repr(params.mem_limit)
        warn = ("no memory limit (mem_limit " + repr(params.mem_limit) + "): one user's runaway notebook can take all "
                "memory",)
    else:
        mem, how = parse_size(params.mem_limit) // 2**20, "mem_limit"
        warn = ()
    return Limits("systemd", mem, params.cpu_limit or None, how, None, warn)


def unit_name(params, user: str) -> str:
    """The transient unit of *user*'s server."""
    return UNIT_TEMPLATE.format(service=params.service_name).replace("{USERNAME}", user) + ".service"


def spawner_class(params) -> str | None:
    """hubrunbook's SystemdSpawner where servers run as units here, else None (hubguard's LocalProcessSpawner)."""
    return SYSTEMD_SPAWNER if why_no_systemd(params) is None else None


def limit_settings(params) -> dict[str, str | None]:
    """The config lines of the limits ({'c.Class.trait': source or None}: None removes our line). Raises
    PreflightError when an explicit limit cannot be enforced here."""
    lim = resolve_limits(params)
    keys = ("c.Spawner.mem_limit", "c.Spawner.cpu_limit", "c.SystemdSpawner.unit_name_template",
            "c.SystemdSpawner.dynamic_users", "c.SystemdSpawner.default_shell", "c.SystemdSpawner.unit_extra_properties")
    if lim.spawner != "systemd":
        return dict.fromkeys(keys)
    extra = {"OOMPolicy": OOM_POLICY, **({"MemorySwapMax": "0"} if lim.mem_mib else {})}
    return {
        "c.Spawner.mem_limit": repr(mib_text(lim.mem_mib)) if lim.mem_mib else None,
        "c.Spawner.cpu_limit": repr(lim.cpu) if lim.cpu else None,
        "c.SystemdSpawner.unit_name_template": repr(UNIT_TEMPLATE.format(service=params.service_name)),
        "c.SystemdSpawner.dynamic_users": repr(False),  # the PAM account, its home and notebook dir
        "c.SystemdSpawner.default_shell": repr(params.user_shell),  # $SHELL of terminals, as for created accounts
        "c.SystemdSpawner.unit_extra_properties": repr(extra),
    }


# --- is it enforced? -----------------------------------------------------------------------------------------------
PROBE_LIMIT_MIB, PROBE_ALLOC_MIB = 32, 160
PROBE_CODE = ("import sys\nchunks = []\nfor i in range({n}):\n    chunks.append(b'x' * 2**20)\n"
              "print('survived', len(chunks), 'MiB'); sys.stdout.flush()\n")


@dataclass(frozen=True)
class Enforcement:
    enforced: bool | None   # None: could not tell
    detail: str             # what was done and seen
    evidence: str = ""      # systemd-run's own lines

    def text(self) -> str:
        if self.enforced:
            return f"enforced on this machine: {self.detail}"
        if self.enforced is None:
            return f"could not tell whether limits are enforced on this machine: {self.detail}"
        return f"NOT enforced on this machine: {self.detail}"


def interpret_memory_probe(returncode: int, stdout: str, stderr: str) -> Enforcement:
    """What a run of the memory probe under systemd-run shows. Pure (unit-tested with systemd-run's lines)."""
    said = " | ".join(line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip())[-600:]
    result = re.search(r"Finished with result: ([\w-]+)", stderr)
    # systemd 252 prints "code=killed/status=KILL", newer ones "code=killed, status=9/KILL"
    ended = re.search(r"Main processes terminated with: code=(\w+)(?:/|,\s*)status=(?:\d+/)?(\w+)", stderr)
    alloc = f"{PROBE_ALLOC_MIB} MiB allocated in a transient unit with MemoryMax={PROBE_LIMIT_MIB}M"
    if "survived" in stdout:
        return Enforcement(False, f"{alloc} survived (the kernel did not apply the unit's limit: cgroup controllers "
                                  "read-only or missing, as inside systemd-nspawn)", said)
    if (result and result.group(1) == "oom-kill") or (ended and ended.group(1) == "killed"
                                                      and ended.group(2) in ("KILL", "9")):
        how = f"result {result.group(1)}" if result else f"code={ended.group(1)}/status={ended.group(2)}"
        return Enforcement(True, f"{alloc} was killed ({how})", said)
    return Enforcement(None, f"the probe neither survived nor was killed by the OOM killer (exit {returncode})", said)


def memory_probe(timeout: float = 60) -> Enforcement:
    """Whether the kernel here applies a unit's MemoryMax: a transient unit allocates past a small one. Starts and
    collects one short unit (hubrunbook-limits-probe-<pid>), changes nothing else."""
    import subprocess

    from hubrunbook.host import systemd

    if not systemd.booted():
        return Enforcement(False, "systemd is not PID 1 (/run/systemd/system is missing): no unit carries a limit")
    unit = f"hubrunbook-limits-probe-{os.getpid()}"
    argv = ["systemd-run", f"--unit={unit}", "--pipe", "--wait", "--collect", "--service-type=exec",
            "-p", f"MemoryMax={PROBE_LIMIT_MIB}M", "-p", "MemorySwapMax=0", "-p", "MemoryAccounting=yes",
            sys.executable, "-c", PROBE_CODE.format(n=PROBE_ALLOC_MIB)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Enforcement(None, f"systemd-run failed: {exc}")
    return interpret_memory_probe(proc.returncode, proc.stdout, proc.stderr)


# --- the unit of a user's server --------------------------------------------------------------------------------
TIMESPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_timespan(text: str) -> float | None:
    """Seconds of a systemd time span as `systemctl show` prints it ('500ms', '1.500000s', '1min 30s'); None for
    'infinity' or an empty value."""
    text = text.strip()
    if text in ("", "infinity"):
        return None
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)\s*(us|ms|min|s|h)", text):
        total += float(num) * TIMESPAN_UNITS[unit]
    return total


def unit_limits_problems(props: dict[str, str], lim: Limits) -> list[str]:
    """What differs between `systemctl show` of a server's unit and *lim*. Pure."""
    problems = []
    want_mem = str(lim.mem_bytes) if lim.mem_bytes else "infinity"
    if props.get("MemoryMax") != want_mem:
        problems.append(f"MemoryMax is {props.get('MemoryMax', '(unset)')}, wanted {want_mem}")
    got_cpu = parse_timespan(props.get("CPUQuotaPerSecUSec", ""))
    want_cpu = int(lim.cpu * 100) / 100 if lim.cpu else None  # systemdspawner writes CPUQuota=<int(cpu*100)>%
    if (got_cpu is None) != (want_cpu is None) or (want_cpu is not None and abs(got_cpu - want_cpu) > 0.005):
        problems.append(f"CPUQuotaPerSecUSec is {props.get('CPUQuotaPerSecUSec', '(unset)')}, wanted "
                        f"{'infinity' if want_cpu is None else f'{want_cpu:g}s of CPU per second'}")
    if props.get("OOMPolicy") not in (None, OOM_POLICY):
        problems.append(f"OOMPolicy is {props['OOMPolicy']}, wanted {OOM_POLICY}")
    return problems


UNIT_PROPS = ("ActiveState", "MemoryMax", "CPUQuotaPerSecUSec", "OOMPolicy", "User", "WorkingDirectory")


def unit_props(unit: str) -> dict[str, str]:
    """`systemctl show` of *unit* (UNIT_PROPS). Read-only."""
    from hubrunbook.core.shell import run_command

    out = run_command(["systemctl", "show", unit, "--property", ",".join(UNIT_PROPS)], timeout=20,
                      what=f"systemctl show {unit}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def check_user_limits(params, *, dry_run: bool = False) -> StepResult:
    """Spawn the first user's server, read its unit's limits with `systemctl show`, then probe whether the kernel
    enforces them; the result says plainly whether enforcement was verified here. Starts (and stops again) the
    server when it was not running, and one short probe unit."""
    from hubrunbook.configure.verify import _verifiable
    from hubrunbook.host.users import user_password
    from hubrunbook.hub import probe

    lim = resolve_limits(params)
    if dry_run:
        return StepResult("check_user_limits", SKIPPED, f"dry run: nothing spawned; {lim.summary()}")
    if lim.spawner != "systemd":
        return StepResult("check_user_limits", SKIPPED,
                          f"no limits per user: NOT enforced on this machine ({lim.why_not}); servers run as the hub's "
                          "children" + "".join(f"; WARNING: {w}" for w in lim.warnings))
    user = _verifiable(params, params.users) or _verifiable(params, params.admin_users)
    if not user:
        return StepResult("check_user_limits", SKIPPED, f"{lim.summary()}; no user whose password is known to spawn "
                          "a server with: the unit's limits were not read")
    session = probe.login(params.public_url, user, user_password(params, user))
    was_running = probe.server_ready(session, params.public_url, user)
    if not was_running:
        probe.start_server(session, params.public_url, user, timeout=params.start_timeout + 60)
    unit = unit_name(params, user)
    try:
        props = unit_props(unit)
    finally:
        if not was_running:
            probe.stop_server(session, params.public_url, user)
    rows = [("unit", props.get("ActiveState", "?"), f"{unit} (User={props.get('User', '?')})"),
            ("MemoryMax", props.get("MemoryMax", "?"), lim.mem_how if lim.mem_mib else "no memory limit"),
            ("CPUQuotaPerSecUSec", props.get("CPUQuotaPerSecUSec", "?"),
             f"cpu_limit {lim.cpu:g}" if lim.cpu else "no CPU limit")]
    problems = unit_limits_problems(props, lim)
    if problems:
        return StepResult("check_user_limits", FAILED, f"{unit} does not carry the limits: {'; '.join(problems)}",
                          rows, ("what", "value", "detail"))
    probe_result = memory_probe()
    rows.append(("enforcement", {True: "enforced", False: "NOT enforced", None: "unknown"}[probe_result.enforced],
                 probe_result.evidence or probe_result.detail))
    carried = (f"{unit} carries the limits ({lim.summary().split(': ', 1)[1]})" if lim.mem_mib or lim.cpu
               else f"{unit}: no limits set")
    status = OK if probe_result.enforced else SKIPPED  # not verified is never reported as passing
    return StepResult("check_user_limits", status, f"{carried}; {probe_result.text()}", rows, ("what", "value", "detail"))


# --- servers killed for their memory ---------------------------------------------------------------------------------
OOM_UNIT_RE = re.compile(r"(?P<unit>[A-Za-z0-9_.@:\\-]+\.service): (?:A process of this unit has been killed by the "
                         r"OOM killer\.|Failed with result 'oom-kill'\.)")
OOM_KERNEL_RE = re.compile(r"oom-kill:.*\boom_memcg=(?P<cg>[^,\s]+)")


def oom_kills(lines: list[str], service_name: str) -> dict[str, str]:
    """{user: the last line that shows their server's unit killed by the OOM killer} from journal lines: systemd's
    "<unit>: A process of this unit has been killed by the OOM killer." / "Failed with result 'oom-kill'." and the
    kernel's "oom-kill:constraint=CONSTRAINT_MEMCG,…,oom_memcg=/system.slice/<unit>,…". Pure."""
    prefix, found = f"{service_name}-singleuser-", {}
    for line in lines:
        m = OOM_UNIT_RE.search(line)
        unit = m.group("unit") if m else None
        if unit is None and (k := OOM_KERNEL_RE.search(line)):
            unit = k.group("cg").rstrip("/").rsplit("/", 1)[-1]
        if unit and unit.startswith(prefix) and unit.endswith(".service"):
            found[unit[len(prefix):-len(".service")]] = line.strip()
    return found


def oom_journal_lines(params, since: str = "-7d", limit: int = 400) -> list[str]:
    """The journal lines of the user units and the kernel that may tell of an OOM kill (last *limit*). Read-only."""
    from hubrunbook.core.shell import run_command

    pattern = f"{params.service_name}-singleuser-*.service"
    out = []
    for args in (["-u", pattern], ["-k", "--grep", "oom-kill"]):
        try:
            out += run_command(["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "--since", since, *args,
                                "-n", str(limit)], timeout=20, check=False, what="journalctl").stdout.splitlines()
        except Exception:  # no journal here: nothing to report
            continue
    return out
