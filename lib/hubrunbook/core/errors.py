"""The one error family of the library: every failure says what, why and what next.

In a notebook a RunbookError is shown cause first: IPython asks an exception for ``_render_traceback_`` and shows
its lines instead of a traceback, so the operator reads the failed step, the cause and the next action before the
traceback, which follows for whoever debugs the library. papermill copies the same lines into its error.
"""
from __future__ import annotations

import traceback

_RED, _BOLD, _DIM, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


class RunbookError(Exception):
    """Base class: a step failed; the message tells the operator what to do."""

    next_action = "read the cause above, fix it and run the runbook again; troubleshoot.ipynb diagnoses a broken hub"
    step: str | None = None  # set by the run when a step raised it
    cause: str | None = None  # the message without the "step ... failed:" prefix
    what: str | None = None  # the headline when it is not one step's failure (a run's summary, the parameters)

    def _render_traceback_(self) -> list[str]:
        """What a notebook shows for this error: failed step, cause, next action, then the traceback."""
        what = f"step {self.step} failed" if self.step else (self.what or "stopped")
        lines = [f"{_RED}{_BOLD}✘ {what} ({type(self).__name__}){_RESET}"]
        cause = (self.cause if self.cause is not None else str(self)).splitlines() or [""]
        lines.append(f"{_BOLD}cause:{_RESET} {cause[0]}")
        lines += [f"       {line}" for line in cause[1:]]
        lines.append(f"{_BOLD}next:{_RESET}  {self.next_action}")
        frames = traceback.format_tb(self.__traceback__) if self.__traceback__ else []
        if frames:
            lines.append(f"{_DIM}traceback (for debugging the library):")
            lines += [line.rstrip("\n") for line in frames]
            lines.append(_RESET)
        return lines


class ParameterError(RunbookError):
    """Parameters are invalid; nothing was changed."""

    what = "parameters refused"

    next_action = ("correct the parameter in the parameters cell (or your parameter file) and run again; "
                   "nothing was changed")


class SecretError(RunbookError):
    """A secret reference cannot be resolved."""

    next_action = ("make the secret available as the reference says (export the variable in the environment that "
                   "runs the runbook, or a 0600 file owned by root) and run again")


class PreflightError(RunbookError):
    """The machine does not meet a prerequisite; nothing was changed."""

    next_action = "fix the machine as the cause says and run again; nothing was changed"


class CommandError(RunbookError):
    """An external command failed or timed out."""

    next_action = ("the command's output is in the cause; fix what it names (network, disk, versions) and run "
                   "again: finished steps are not repeated")


class HubError(RunbookError):
    """The hub or its proxy did not start, stop or answer as expected."""

    next_action = "run troubleshoot.ipynb: it reads the hub's log and unit, names the cause and can repair it"


class ConfigError(RunbookError):
    """A jupyterhub_config.py edit would be invalid; the file was left as it was."""

    next_action = "the config file was left as it was; correct the parameter or the hand edit named and run again"


class VerificationError(RunbookError):
    """A verification probe failed."""

    next_action = "run troubleshoot.ipynb: it names the cause with evidence and can repair what is ours"
