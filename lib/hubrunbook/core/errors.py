"""The one error family of the library: every failure says what, why and what next."""


class RunbookError(Exception):
    """Base class: a step failed; the message tells the operator what to do."""


class ParameterError(RunbookError):
    """Parameters are invalid; nothing was changed."""


class SecretError(RunbookError):
    """A secret reference cannot be resolved."""


class PreflightError(RunbookError):
    """The machine does not meet a prerequisite; nothing was changed."""


class CommandError(RunbookError):
    """An external command failed or timed out."""


class HubError(RunbookError):
    """The hub or its proxy did not start, stop or answer as expected."""


class ConfigError(RunbookError):
    """A jupyterhub_config.py edit would be invalid; the file was left as it was."""


class VerificationError(RunbookError):
    """A verification probe failed."""
