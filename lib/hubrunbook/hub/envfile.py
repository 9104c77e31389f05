"""hub.env, the hub's environment file (``params.layout.hub_env``, 0600): the one reader and the one writer.

It holds the proxy auth token (so a restarted hub and a surviving proxy agree) and the OAuth client id and secret.
systemd reads it as the unit's ``EnvironmentFile=``; the managed background process gets what
:func:`read_hub_env` returns. Both must see the same values, so the reader follows systemd's rules:

- blank lines and lines whose first non-blank character is ``#`` or ``;`` are comments;
- ``KEY=VALUE``: blanks around the key and before the value are dropped; a line without ``=`` is ignored;
- unquoted: trailing blanks are dropped and ``\\`` takes the next character literally (``\\`` + newline joins lines);
- ``'…'`` is literal; in ``"…"`` a ``\\`` before one of ``"\\`$`` or a newline is removed, before others it stays;
- a quoted part may follow another (blanks between are dropped); inside an unquoted part quotes are literal;
- ``$VAR`` is not expanded;
- a key that is not a valid variable name (``export KEY``, ``MY KEY``) is ignored, as systemd's executor does.

The writer puts plain values (letters, digits, ``-_.:/+=@%,~``) bare and double-quotes anything else, so that both
readers give back exactly what was written. Values are registered for masking as they are read or written.
"""
from __future__ import annotations

import os
import re

from hubrunbook.core import secretref
from hubrunbook.core.errors import HubError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLAIN_RE = re.compile(r"^[A-Za-z0-9_.:/+=@%,~-]*$")
DQ_ESCAPED = '"\\`$'
HEADER = "# environment of the managed JupyterHub; written by hubrunbook, mode 0600\n"


def parse_env_text(text: str) -> dict[str, str]:
    """The variables an EnvironmentFile with *text* gives a systemd service (later lines win). Pure."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n":  # blanks before the key
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            i = _skip_comment(text, i)
            continue
        eol = text.find("\n", i)
        eol = n if eol < 0 else eol
        eq = text.find("=", i, eol)
        if eq < 0:  # no '=' on this line: not an assignment
            i = eol + 1
            continue
        key = text[i:eq].strip(" \t\r")
        value, i = _parse_value(text, eq + 1)
        if NAME_RE.match(key):
            out[key] = value
    return out


def _skip_comment(text: str, i: int) -> int:
    """Index after the comment starting at *i* (a comment ends at the first newline)."""
    eol = text.find("\n", i)
    return len(text) if eol < 0 else eol + 1


def _parse_value(text: str, i: int) -> tuple[str, int]:
    """The value starting at *i* and the index after its line.

    Between parts (at the start and after a quoted part) blanks are skipped and quotes open a quoted part; inside an
    unquoted part quotes are literal and trailing blanks are dropped.
    """
    n = len(text)
    chars: list[str] = []
    unquoted = False  # inside an unquoted part
    trail = None  # where a run of blanks at the end of an unquoted part began
    while i < n and text[i] != "\n":
        c = text[i]
        if c == "\\":
            if i + 1 < n and text[i + 1] != "\n":
                chars.append(text[i + 1])
            unquoted, trail, i = True, None, i + 2
        elif unquoted:
            if c in " \t\r":
                trail = len(chars) if trail is None else trail
            else:
                trail = None
            chars.append(c)
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            chars += text[i + 1:end]
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in DQ_ESCAPED:
                        chars.append(nxt)
                    elif nxt != "\n":
                        chars += ["\\", nxt]
                    i += 2
                else:
                    chars.append(text[i])
                    i += 1
            i += 1
        else:
            unquoted = True
            chars.append(c)
            i += 1
    if trail is not None:
        del chars[trail:]
    return "".join(chars), i + 1


def format_env_text(env: dict[str, str]) -> str:
    """hub.env text for *env* (sorted by name) that :func:`parse_env_text` and systemd read back unchanged. Pure."""
    lines = [HEADER]
    for key, value in sorted(env.items()):
        if not NAME_RE.match(key):
            raise HubError(f"hub.env: {key!r} is not a valid environment variable name")
        if "\n" in value or "\r" in value:
            raise HubError(f"hub.env: the value of {key} contains a line break")
        if not PLAIN_RE.match(value):
            value = '"' + "".join("\\" + c if c in DQ_ESCAPED else c for c in value) + '"'
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def read_hub_env(params) -> dict[str, str]:
    """The variables of hub.env as the hub gets them (values registered for masking); {} when it does not exist."""
    path = params.layout.hub_env
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise HubError(f"{path} cannot be read ({exc}); it must be a root-owned 0600 file") from None
    return {k: secretref.register(v) for k, v in parse_env_text(text).items()}


def set_hub_env(params, updates: dict[str, str | None], *, dry_run: bool = False) -> bool:
    """Set (or with None remove) variables in hub.env, written 0600 atomically; True when it changed."""
    env = read_hub_env(params)
    new = {k: v for k, v in env.items() if k not in updates or updates[k] is not None}
    new.update({k: secretref.register(v) for k, v in updates.items() if v is not None})
    text = format_env_text(new)  # refuses names and values systemd would read differently, before anything changes
    if new == env:
        return False
    if not dry_run:
        secrets_dir = params.layout.secrets_dir
        secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(secrets_dir, 0o700)
        secretref.write_private(params.layout.hub_env, text)
    return True
