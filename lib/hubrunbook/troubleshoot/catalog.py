"""What a troubleshooting check is, and the catalog the checks register themselves in.

A check is a read-only detector of one known problem with its example, cause and action, and optionally a repair.
Each check module declares its checks with ``NAME = register(Check(..., stage=...))`` next to the detector; importing
``hubrunbook.troubleshoot.checks`` registers them all. ``CATALOG`` is that list in repair order: by ``STAGES`` (broken
installs first, then stray processes, files, the database and users, the hub restart last, then the hub's log), and
within a stage in the order the checks are registered. docs/troubleshoot-catalog.md is generated from it.
"""
from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from hubrunbook.core import secretref
from hubrunbook.core.steps import COLORS, FAILED, StepResult, html_table

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
_RANK = {ERROR: 0, WARNING: 1, INFO: 2}
_SEV_COLOR = {ERROR: COLORS[FAILED], WARNING: "#ef6c00", INFO: "#1565c0"}


@dataclass
class Finding:
    """One problem found: what was seen, the evidence (log line, PID, mode), its cause and the fix."""

    id: str
    severity: str
    title: str
    seen: str
    evidence: str = ""
    cause: str = ""
    fix: str = ""
    repairable: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # facts a repair needs (PIDs, paths); never secrets
    check: str = ""  # the catalog entry that produced it (its repair is that entry's)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}; got {self.severity!r}")
        for name in ("title", "seen", "evidence", "cause", "fix"):
            setattr(self, name, secretref.mask(str(getattr(self, name))))

    def as_dict(self) -> dict[str, Any]:
        keys = ("id", "check", "severity", "title", "seen", "evidence", "cause", "fix", "repairable")
        return {k: secretref.mask(v) if isinstance(v := getattr(self, k), str) else v for k in keys} | {
            "data": {k: v for k, v in self.data.items() if isinstance(v, (str, int, float, bool, type(None), list))}
        }

    def _repr_html_(self) -> str:
        color = _SEV_COLOR[self.severity]
        rows = [("seen", self.seen), ("evidence", self.evidence), ("cause", self.cause), ("fix", self.fix),
                ("repair", "available (apply_fixes: true)" if self.repairable else "by hand")]
        return (f"<p><span style='color:{color};font-weight:bold'>{self.severity.upper()}</span> "
                f"<code>{html.escape(self.id)}</code>: {html.escape(self.title)}</p>" + html_table(("", ""), rows))

    def __repr__(self) -> str:
        return (f"[{self.severity}] {self.id}: {self.title}\n  seen: {self.seen}\n  evidence: {self.evidence}\n"
                f"  cause: {self.cause}\n  fix: {self.fix}")


@dataclass(frozen=True)
class Check:
    """A catalog entry: what a check detects, an example of what the operator sees, the cause, the action.

    ``detect(ctx) -> list[Finding]`` is read-only; ``repair(params, finding, *, dry_run) -> StepResult`` is optional.
    """

    id: str
    title: str
    example: str
    cause: str
    action: str
    detect: Callable[["Context"], list[Finding]]
    repair: Callable[..., StepResult] | None = None
    guide: str = ""  # section of the field guide it comes from, if any
    stage: str = ""  # one of STAGES: where its repair runs in the repair order

    def finding(self, severity: str, seen: str, evidence: str = "", *, cause: str = "", fix: str = "",
                id: str | None = None, title: str | None = None, repairable: bool | None = None, **data) -> Finding:
        """A Finding of this check (cause and fix default to the catalog's; repairable when the check has a repair)."""
        can = self.repair is not None and (repairable is None or repairable)
        return Finding(id or self.id, severity, title or self.title, seen, evidence, cause or self.cause,
                       fix or self.action, repairable=can, data=data, check=self.id)


class Context:
    """What the checks of one scan share: the params and facts computed once (thread-safe, lazily)."""

    def __init__(self, params, *, log_tail_kb: int = 256):
        self.params = params
        self.log_tail_kb = log_tail_kb
        self._facts: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def fact(self, name: str, compute: Callable[[], Any]) -> Any:
        """The value of fact *name*, computing it once per scan with *compute*."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._facts:
                self._facts[name] = compute()
            return self._facts[name]


# repair order: a later stage's repair may rely on an earlier one's (the hub restart needs the env, proxy, ports,
# files, config and users right; the log is read last, after what the other checks saw)
STAGES = (
    "install",  # the hub env, its packages, Node.js, the proxy
    "ports",    # stray or foreign processes on our ports
    "files",    # secret file modes, the database, free disk
    "access",   # the config file, allow rule, OAuth, accounts, notebook dirs, what users can run
    "hub",      # the hub service and process (restarted last)
    "log",      # known messages in the hub's log
)

CATALOG: list[Check] = []


def register(check: Check) -> Check:
    """Add *check* to CATALOG at its stage (after the checks registered before it there); returns it."""
    if check.stage not in STAGES:
        raise ValueError(f"check {check.id!r}: stage must be one of {STAGES}; got {check.stage!r}")
    if any(c.id == check.id for c in CATALOG):
        raise ValueError(f"check {check.id!r} is registered twice")
    CATALOG.append(check)
    CATALOG.sort(key=lambda c: STAGES.index(c.stage))  # stable: registration order within a stage
    return check
