"""What the checks of one scan share: the hub env probe, our PIDs, listeners, the loaded config (each once per scan)."""
from __future__ import annotations

from hubrunbook.troubleshoot import facts
from hubrunbook.host import ports
from hubrunbook.core import secretref
from hubrunbook.hub.configload import LoadedConfig
from hubrunbook.troubleshoot.catalog import Context


def _env(ctx: Context) -> dict:
    return ctx.fact("env", lambda: facts.probe_env(ctx.params))


def _hub_pid(ctx: Context):
    return ctx.fact("hub_pid", lambda: facts.hub_pid(ctx.params))


def _proxy_pid(ctx: Context):
    return ctx.fact("proxy_pid", lambda: facts.recorded_proxy_pid(ctx.params))


def _listeners(ctx: Context, port: int) -> set[int]:
    return ctx.fact(f"listen:{port}", lambda: ports.listeners(port))


def _config_or_error(ctx: Context) -> tuple[LoadedConfig | None, str | None]:
    def load():
        try:
            return facts.load_config(ctx.params), None
        except Exception as exc:  # ConfigError, or config.py missing: reported by check_config_file
            return None, secretref.mask(str(exc))
    return ctx.fact("config", load)


def _config(ctx: Context) -> dict | None:
    """The effective config values ('c.Authenticator.allowed_users' → value), or None when it does not load."""
    loaded = _config_or_error(ctx)[0]
    return loaded.values if loaded else None


def config_sets(ctx: Context, trait: str) -> bool:
    """Whether the config file sets *trait* on any class (its value is never read); False when it does not load."""
    loaded = _config_or_error(ctx)[0]
    return bool(loaded and loaded.sets_trait(trait))


def cfg(ctx: Context, key: str, default=None):
    """One effective config value by its 'Class.trait' name."""
    return (_config(ctx) or {}).get(f"c.{key}", default)
