"""How many servers the machine can start at once, and how long a start may take: spawn limits from cores and memory.

JupyterHub's defaults (``Spawner.http_timeout`` 30 s, ``concurrent_spawn_limit`` 100) assume a machine that starts
any burst of servers within 30 s. A 2-core machine does not: 20 users logging in at once start 20 JupyterLab
servers that share 2 cores, every one of them slows down, and with cold caches or a busy machine all of them miss
the 30 s and fail ("server never showed up ... Giving up"). So:

- ``concurrent_spawn_limit`` = the burst the machine starts within ``BURST_S`` seconds when idle
  (``cores * BURST_S / SPAWN_CPU_S``), at most what half the memory holds (``SERVER_MEM_MIB`` per server),
  1..100. JupyterHub answers a spawn beyond it with 429 "Too many users trying to log in right now. Try again in
  N seconds" and a Retry-After header (30–60 s, not configurable in JupyterHub 5/6); it never queues. So the 429 page
  hubrunbook installs (``templates/429.html``) counts down that wait and asks for the spawn again by itself.
- ``Spawner.http_timeout`` and ``Spawner.start_timeout`` = ``SLACK`` times the time a full burst takes when idle
  (cold caches and a machine shared with other work stretch it: 3.3x measured at load average 7), 60..600 s, so
  that spawns within the limit wait on the spawn-pending page instead of failing.

Only the machine's size enters (cores available to us, total memory), never its momentary load: the values, and so
the config file, stay the same from one run to the next. Measured on this kind of machine (Debian 12, 2 cores,
JupyterHub 6.1.1, JupyterLab 4.6): one server takes ~2.0–2.7 CPU-seconds from exec to answering /api and
~82 MiB RSS, plus the hub's share of login, spawn, proxy route and the OAuth redirects.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import psutil

from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

SPAWN_CPU_S = 3.0  # CPU seconds one login + spawn + first /lab costs the machine (server ~2.5 s + hub/proxy)
SERVER_MEM_MIB = 150  # memory one started JupyterLab server holds (~82 MiB RSS measured, kept generous)
BURST_S = 30  # an idle machine should start a full burst of spawns within this (JupyterHub's own http_timeout)
SLACK = 6  # cold caches, a machine busy with other work: a burst of 20 took 3.3x its idle time at load 7 here
LIMIT_RANGE = (1, 100)  # 100 is JupyterHub's default limit
TIMEOUT_RANGE = (60, 600)  # 60 is JupyterHub's default start_timeout


@dataclass(frozen=True)
class Capacity:
    cores: int
    memory_mib: int
    concurrent_spawn_limit: int
    spawn_timeout: int
    limit_source: str  # "auto" or "parameter"
    timeout_source: str

    def summary(self) -> str:
        return (f"spawn capacity: {self.cores} cores, {self.memory_mib} MiB → concurrent_spawn_limit "
                f"{self.concurrent_spawn_limit} ({self.limit_source}), spawn timeouts {self.spawn_timeout} s "
                f"({self.timeout_source}); more at once wait on a 429 page that asks again")


def machine_size() -> tuple[int, int]:
    """(CPU cores this process may run on, total memory in MiB). Read-only."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = psutil.cpu_count() or 1
    return max(cores, 1), psutil.virtual_memory().total // 2**20


def auto_spawn_limit(cores: int, memory_mib: int) -> int:
    """The burst an idle machine starts within BURST_S, at most what half its memory holds; 1..100. Pure."""
    by_cpu = cores * BURST_S / SPAWN_CPU_S
    by_memory = memory_mib * 0.5 / SERVER_MEM_MIB
    return int(min(max(min(by_cpu, by_memory), LIMIT_RANGE[0]), LIMIT_RANGE[1]))


def auto_spawn_timeout(cores: int, limit: int) -> int:
    """SLACK times how long a full burst of *limit* spawns takes on *cores* idle cores; 60..600 s. Pure."""
    burst = limit * SPAWN_CPU_S / cores
    return int(min(max(math.ceil(SLACK * burst), TIMEOUT_RANGE[0]), TIMEOUT_RANGE[1]))


def spawn_capacity(params, size: tuple[int, int] | None = None) -> Capacity:
    """The spawn limit and timeouts for *params* ('auto' derived from the machine's size). Read-only."""
    cores, memory = size or machine_size()
    auto_limit = params.concurrent_spawn_limit == "auto"
    limit = auto_spawn_limit(cores, memory) if auto_limit else params.concurrent_spawn_limit
    auto_timeout = params.spawn_timeout == "auto"
    timeout = auto_spawn_timeout(cores, limit) if auto_timeout else params.spawn_timeout
    return Capacity(cores, memory, limit, timeout, "auto" if auto_limit else "parameter",
                    "auto" if auto_timeout else "parameter")


def spawn_settings(params) -> dict[str, int | list[str]]:
    """The hub settings that make spawns beyond the machine's capacity wait or retry, never time out."""
    cap = spawn_capacity(params)
    return {"c.JupyterHub.concurrent_spawn_limit": cap.concurrent_spawn_limit,
            "c.Spawner.http_timeout": cap.spawn_timeout,
            "c.Spawner.start_timeout": cap.spawn_timeout,
            "c.JupyterHub.template_paths": [str(params.layout.templates_dir)]}


# --- the 429 page retries by itself ----------------------------------------------------------------------------
# JupyterHub renders <status>.html before error.html; this one is its error page plus a countdown that loads the
# page again (GET /hub/spawn/<name>: the spawn is asked for again) after the wait the message names.
RETRY_PAGE = """\
{#- hubrunbook (capacity.py): the hub answers spawns beyond c.JupyterHub.concurrent_spawn_limit with 429; this page
    asks again by itself after the wait it names, as the person would by reloading. Rewritten by configure. -#}
{% extends "templates/error.html" %}
{% block script %}
{{ super() }}
<script>
  (function () {
    var m = /(\\d+) (second|minute)/.exec({{ message | tojson }});
    var left = m ? Number(m[1]) * (m[2] === "minute" ? 60 : 1) : 30;
    var note = document.createElement("p");
    note.id = "hubrunbook-retry";
    (document.querySelector(".error") || document.body).appendChild(note);
    (function tick() {
      note.textContent = "Many users are starting their servers: this page asks again for yours in " + left +
        " s. Keep it open.";
      if (left-- <= 0) { window.location.reload(); } else { setTimeout(tick, 1000); }
    })();
  })();
</script>
{% endblock script %}
"""


def ensure_retry_page(params, *, dry_run: bool = False) -> StepResult:
    """Write <prefix>/templates/429.html (root's, 0644): the hub's "too many users" page that retries. Idempotent."""
    from hubrunbook.hub.config import write_atomic

    path = params.layout.retry_page
    if path.is_file() and not path.is_symlink() and path.read_text() == RETRY_PAGE:
        return StepResult("ensure_retry_page", UNCHANGED, f"{path} in place")
    if dry_run:
        return StepResult("ensure_retry_page", WOULD_CHANGE, f"would write {path}")
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    write_atomic(path, RETRY_PAGE)
    return StepResult("ensure_retry_page", CHANGED, f"wrote {path}: the 429 page retries after the wait it names")
