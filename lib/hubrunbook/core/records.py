"""hubrunbook's own JSON records under <prefix>/state: versioned, written atomically 0600, refused when damaged."""
from __future__ import annotations

import json
from pathlib import Path

from hubrunbook.core import secretref
from hubrunbook.core.errors import PreflightError


def read_record(path: Path, key: str, *, what: str, purpose: str) -> dict[str, dict]:
    """The entries under *key* of the record at *path*; {} when there is none. A record that cannot be read or is not
    ours (*what*) stops the run, saying what it is for (*purpose*). Read-only."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PreflightError(f"{path} cannot be read ({exc}); fix or remove it ({purpose})") from None
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise PreflightError(f"{path} is not {what}; fix or remove it")
    return entries


def write_record(path: Path, key: str, entries: dict[str, dict]) -> None:
    """Write the record atomically, mode 0600 (its directory 0700 when created)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secretref.write_private(path, json.dumps({"version": 1, key: entries}, indent=2, sort_keys=True) + "\n")
