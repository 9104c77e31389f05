"""The test house: fixtures come from the plugins in tests/support/ (a test names a fixture, never imports it), and
tests marked ``runs_last`` run after all others (nbval compares the committed runbooks once everything else passed)."""
from __future__ import annotations

pytest_plugins = ["support.sandbox", "support.deployment", "support.oauth"]


def pytest_collection_modifyitems(config, items):
    """Move tests marked runs_last to the end, keeping the collection order otherwise (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)
