"""jupyterhub_config.py (guide §2.1–2.3): generate it once, set values precisely, prove it loads.

Edits follow the guide's way by hand: next to the generated commented line
``# c.Class.trait = default`` a live line ``c.Class.trait = value  # hubrunbook``
is added; settings the generated file does not list go at the end. Only lines
carrying the ``# hubrunbook`` marker are ever rewritten, so edits made by hand
elsewhere survive. Every write is atomic, keeps a timestamped backup, and is
preceded by loading the candidate file with JupyterHub's own config loader in
the hub env; a candidate that does not load, or does not give the intended
values, is refused and the old file stays as it was.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from hubrunbook.hub import hubguard
from hubrunbook.hub.capacity import ensure_retry_page, spawn_capacity, spawn_settings
from hubrunbook.hub.configload import load_config
from hubrunbook.hub.limits import limit_settings, resolve_limits
from hubrunbook.core.errors import ConfigError
from hubrunbook.hub.proxy import proxy_command
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

MARK = "  # hubrunbook"
KEY_RE = re.compile(r"^c\.[A-Za-z_]\w*\.[A-Za-z_]\w*$")
TAIL_HEADER = "#------------------------------------------------------------------------------\n# Settings managed by hubrunbook (parameters) that the generated file does not list\n#------------------------------------------------------------------------------"


def _lit(value) -> str:
    """Python source for *value*, sets sorted so the file is stable."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}" if value else "set()"
    return repr(value)


def allowed_names(params) -> set[str]:
    """Who may log in: users, allowed_users and the admins. JupyterHub 6 adds admin_users to allowed_users only when
    allowed_users is not empty (app.init_users), so with admins alone in the parameters they were locked out."""
    return set(params.users) | set(params.allowed_users) | set(params.admin_users)


def check_allow_rule(params) -> None:
    """Refuse a configuration that would let nobody log in (JupyterHub ≥ 5 has no implicit allow)."""
    if params.allow_all or allowed_names(params):
        return
    raise ConfigError(
        "nobody could log in: JupyterHub ≥ 5 admits no one without an allow rule and users, allowed_users and "
        "admin_users are all empty. Fix: list users or allowed_users, or set allow_all: true"
    )


def hub_settings(params) -> dict[str, str]:
    """The settings configure.ipynb owns, as {'c.Class.trait': python source}."""
    check_allow_rule(params)
    layout = params.layout
    return {
        "c.JupyterHub.bind_url": _lit(bind_url(params)),
        "c.JupyterHub.hub_ip": _lit("127.0.0.1"),
        "c.JupyterHub.hub_port": _lit(params.hub_port),
        "c.ConfigurableHTTPProxy.api_url": _lit(f"http://127.0.0.1:{params.proxy_api_port}"),
        "c.ConfigurableHTTPProxy.command": _lit(proxy_command(params)),
        "c.ConfigurableHTTPProxy.pid_file": _lit(str(layout.proxy_pid_file)),
        "c.JupyterHub.db_url": _lit(f"sqlite:///{layout.hub_db}"),
        "c.JupyterHub.cookie_secret_file": _lit(str(layout.cookie_secret)),
        "c.JupyterHub.authenticator_class": _lit(hubguard.PAM_CLASS),
        "c.Authenticator.admin_users": _lit(set(params.admin_users)),
        "c.Authenticator.allowed_users": _lit(allowed_names(params)),
        "c.Authenticator.allow_all": _lit(params.allow_all),
        "c.Spawner.notebook_dir": _lit(params.notebook_dir),
        "c.Spawner.default_url": _lit(params.default_url),
        # users' servers run from the user env (userenv.ipynb), not from the hub's
        "c.Spawner.cmd": _lit([str(params.layout.userenv_bin("jupyterhub-singleuser"))]),
        # HTTPS served by the proxy (checked by tls.check_tls first); None removes our lines when TLS is switched off
        "c.JupyterHub.ssl_cert": _lit(params.ssl_cert) if params.ssl_cert else None,
        "c.JupyterHub.ssl_key": _lit(params.ssl_key) if params.ssl_cert else None,
        **{key: _lit(value) for key, value in spawn_settings(params).items()},  # capacity.py: load
        **hubguard.guard_settings(params),
        **limit_settings(params),  # limits.py: limits per user (systemd units), or our lines removed
    }


def bind_url(params) -> str:
    """Where the proxy listens for users: https:// when it serves TLS (ssl_cert), else http://."""
    host = f"[{params.bind_ip}]" if ":" in params.bind_ip else params.bind_ip
    return f"{'https' if params.ssl_cert else 'http'}://{host}:{params.port}"


# --- text edits (pure) -------------------------------------------------------------------------
def _line_for(key: str, src: str) -> str:
    return f"{key} = {src}{MARK}"


def edit_text(text: str, settings: dict[str, str | None]) -> tuple[str, list[tuple[str, str, str]]]:
    """Apply *settings* to config *text*; return (new text, rows of (key, action, value)). Pure.

    A value of None removes our managed line for that key.
    """
    lines = text.splitlines()
    rows = []
    for key, src in settings.items():
        if not KEY_RE.match(key):
            raise ConfigError(f"not a config key: {key!r} (expected c.Class.trait)")
        ours = [i for i, l in enumerate(lines) if l.startswith(f"{key} =") and l.endswith(MARK)]
        if src is None:
            if ours:
                for i in reversed(ours):
                    del lines[i]
                rows.append((key, "removed", ""))
            continue
        new = _line_for(key, src)
        if ours:
            if lines[ours[0]] == new and len(ours) == 1:
                continue
            for i in reversed(ours[1:]):
                del lines[i]
            lines[ours[0]] = new
            rows.append((key, "updated", src))
            continue
        commented = [i for i, l in enumerate(lines) if re.match(rf"^#\s*{re.escape(key)}\s*=", l)]
        if commented:
            lines.insert(commented[0] + 1, new)
        else:
            if TAIL_HEADER.splitlines()[1] not in lines:
                lines += ["", *TAIL_HEADER.splitlines()]
            lines.append(new)
        rows.append((key, "set", src))
    return "\n".join(lines) + "\n", rows


def hand_overrides(text: str, keys) -> list[str]:
    """Keys that a hand-written live line sets *after* our line (it would win): reported, never edited."""
    found = []
    for key in keys:
        idx = [i for i, l in enumerate(text.splitlines()) if l.startswith(f"{key} =") or l.startswith(f"{key}=")]
        ours = [i for i in idx if text.splitlines()[i].endswith(MARK)]
        if ours and any(i > ours[-1] for i in idx if i not in ours):
            found.append(key)
    return found


def _expected(src: str):
    v = ast.literal_eval(src) if src != "set()" else set()
    return sorted(v) if isinstance(v, (set, frozenset)) else v


def verify_candidate(params, text: str, settings: dict[str, str | None]) -> None:
    """Write *text* to a private temp file, load it, compare effective values with *settings*; raise ConfigError."""
    target = params.config_path
    fd, tmp = tempfile.mkstemp(prefix=".candidate-", suffix=".py", dir=target.parent)
    try:
        os.write(fd, text.encode())
        os.close(fd)
        verify_file(params, Path(tmp), settings, what="the edited config would not give the intended values "
                                                      "(a hand-written line overrides them?), file left unchanged")
    finally:
        Path(tmp).unlink(missing_ok=True)


def verify_file(params, path: Path, settings: dict[str, str | None], *, what: str) -> None:
    """Load *path* with JupyterHub's loader and compare effective values with *settings*; raise ConfigError. Read-only."""
    keys = [k for k, v in settings.items() if v is not None]
    got = load_config(params, keys, path=path).values
    wrong = [f"{k}: wanted {_expected(settings[k])!r}, file gives {got.get(k, '(unset)')!r}"
             for k in keys if got.get(k) != _expected(settings[k])]
    if wrong:
        raise ConfigError(f"{what}:\n  " + "\n  ".join(wrong))


def write_atomic(path: Path, text: str) -> Path | None:
    """Replace *path* with *text* atomically (mode 0644), keeping a timestamped backup; returns the backup path."""
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.bak-{datetime.now():%Y%m%d-%H%M%S-%f}")
        shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return backup


# --- steps ---------------------------------------------------------------------------------------
def ensure_config_file(params, *, dry_run: bool = False) -> StepResult:
    """Generate the default jupyterhub_config.py with `jupyterhub --generate-config` if it does not exist. Idempotent."""
    path = params.config_path
    if path.exists():
        return StepResult("ensure_config_file", UNCHANGED, f"{path} exists ({path.stat().st_size // 1024} KiB)")
    if dry_run:
        return StepResult("ensure_config_file", WOULD_CHANGE, f"would generate {path} with jupyterhub --generate-config")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        gen = Path(tmp) / "jupyterhub_config.py"
        run_command([params.layout.env_bin("jupyterhub"), "--generate-config", "-f", gen], timeout=120, cwd=tmp,
                    what="jupyterhub --generate-config")
        os.chmod(gen, 0o644)
        os.replace(gen, path)
    return StepResult("ensure_config_file", CHANGED, f"generated {path} ({path.stat().st_size // 1024} KiB)")


def apply_settings(params, settings: dict[str, str | None], *, step: str = "ensure_config", dry_run: bool = False) -> StepResult:
    """Set *settings* in the config file (atomic, backup, verified with the loader first). Idempotent."""
    path = params.config_path
    if not path.exists():
        if dry_run:
            return StepResult(step, WOULD_CHANGE, f"would set {len(settings)} settings in the generated {path}",
                              [(k, "set", v) for k, v in settings.items() if v is not None], ("setting", "action", "value"))
        raise ConfigError(f"{path} does not exist; run ensure_config_file first")
    old = path.read_text()
    new, rows = edit_text(old, settings)
    rows = [(k, a, v) for k, a, v in rows]
    if new == old:
        over = hand_overrides(old, [k for k, v in settings.items() if v is not None])
        if over:
            raise ConfigError(f"{path}: lines written by hand after ours override {', '.join(over)}; "
                              "remove them or change the parameters instead")
        # "unchanged" means the file loads and gives these values, not only that its text matches
        verify_file(params, path, settings, what=f"{path} does not give the intended values")
        return StepResult(step, UNCHANGED, f"{path}: {len(settings)} settings already in place, verified with "
                                           "JupyterHub's loader")
    if dry_run:
        return StepResult(step, WOULD_CHANGE, f"would change {len(rows)} settings in {path}", rows, ("setting", "action", "value"))
    verify_candidate(params, new, settings)
    backup = write_atomic(path, new)
    return StepResult(step, CHANGED, f"{path}: {len(rows)} settings changed, verified with JupyterHub's loader; backup {backup.name}",
                      rows, ("setting", "action", "value"))


AUTH_KEY = "c.JupyterHub.authenticator_class"


def switched_authenticator(params) -> str | None:
    """The authenticator another runbook (oauth.ipynb) set in our managed line, or None when it is PAM/unset."""
    path = params.config_path
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f"{AUTH_KEY} =") and line.endswith(MARK):
            value = line.split("=", 1)[1].removesuffix(MARK).strip()
            return None if value in ("'pam'", '"pam"', repr(hubguard.PAM_CLASS)) else value
    return None


def configure_settings(params) -> dict[str, str]:
    """hub_settings, minus the authenticator once oauth.ipynb has switched it (configure must not undo that)."""
    settings = hub_settings(params)
    if switched_authenticator(params):
        settings.pop(AUTH_KEY)
    return settings


def ensure_config(params, *, dry_run: bool = False) -> StepResult:
    """Set admins, allow rule, notebook dir, ports, proxy, database and secrets paths (guide §2.2–2.3). Idempotent.

    Leaves c.JupyterHub.authenticator_class alone once oauth.ipynb has switched it. Also writes the module with the
    authenticator and spawner classes the config names (hubguard.py: system accounts never log in or spawn).
    """
    page = ensure_retry_page(params, dry_run=dry_run)  # capacity.py: load (the 429 page the template_paths line names)
    module, module_detail = hubguard.ensure_hub_module(params, dry_run=dry_run)
    result = apply_settings(params, configure_settings(params), step="ensure_config", dry_run=dry_run)
    if page.status != UNCHANGED:
        result.rows.append(("429.html", page.status, page.detail))
        if result.status == UNCHANGED:
            result.status = page.status
    if module != UNCHANGED:
        result.status = module if result.status == UNCHANGED else result.status
        result.detail += f"; {module_detail}"
    if other := switched_authenticator(params):
        result.detail += f"; authenticator kept as {other} (set by oauth.ipynb)"
    result.detail += f"; {spawn_capacity(params).summary()}; {resolve_limits(params).summary()}"
    return result

