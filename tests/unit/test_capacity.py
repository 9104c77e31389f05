"""Spawn limits and timeouts from the machine's size (capacity.py) and their parameters."""
import pytest

from hubrunbook.hub.capacity import auto_spawn_limit, auto_spawn_timeout, machine_size, spawn_capacity
from hubrunbook.hub.config import hub_settings
from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import build_params


@pytest.mark.parametrize("cores, memory, limit, timeout", [
    (2, 24105, 20, 180),  # this machine: 2 cores x 30 s / 3 CPU-s; a burst of 20 takes ~30 s idle, x6 slack
    (1, 2048, 6, 108),  # memory-bound: half of 2 GiB holds 6 servers of 150 MiB
    (1, 200, 1, 60),  # never below one spawn at a time, never below JupyterHub's own 60 s start timeout
    (8, 16384, 54, 122),
    (64, 262144, 100, 60),  # never above JupyterHub's default limit
])
def test_limits_follow_cores_and_memory(cores, memory, limit, timeout):
    assert auto_spawn_limit(cores, memory) == limit
    assert auto_spawn_timeout(cores, limit) == timeout


def test_a_long_burst_is_capped_at_ten_minutes():
    assert auto_spawn_timeout(1, 1000) == 600


def test_machine_size_is_stable_and_positive():
    cores, memory = machine_size()
    assert cores >= 1 and memory > 0
    assert machine_size() == (cores, memory), "the config must not change from one run to the next"


def test_parameters_override_auto():
    p = build_params({"concurrent_spawn_limit": 4, "spawn_timeout": 300})
    cap = spawn_capacity(p, size=(2, 4096))
    assert (cap.concurrent_spawn_limit, cap.spawn_timeout, cap.limit_source, cap.timeout_source) == (4, 300, "parameter", "parameter")
    auto = spawn_capacity(build_params({}), size=(2, 24105))
    assert (auto.concurrent_spawn_limit, auto.spawn_timeout, auto.limit_source) == (20, 180, "auto")
    assert "concurrent_spawn_limit 20 (auto), spawn timeouts 180 s (auto)" in auto.summary()
    # a set limit still gets a timeout derived from it
    assert spawn_capacity(build_params({"concurrent_spawn_limit": 40}), size=(2, 24105)).spawn_timeout == 360


def test_the_hub_settings_carry_the_limits():
    p = build_params({"concurrent_spawn_limit": 7, "spawn_timeout": 200})
    s = hub_settings(p)
    assert s["c.JupyterHub.concurrent_spawn_limit"] == "7"
    assert s["c.Spawner.http_timeout"] == "200"
    assert s["c.Spawner.start_timeout"] == "200"


@pytest.mark.parametrize("key, value", [
    ("concurrent_spawn_limit", 0),  # 0 is JupyterHub's "no limit": the failure this guards against
    ("concurrent_spawn_limit", 1001),
    ("concurrent_spawn_limit", "8"),
    ("concurrent_spawn_limit", 8.0),
    ("concurrent_spawn_limit", True),
    ("concurrent_spawn_limit", "unlimited"),
    ("spawn_timeout", 5),
    ("spawn_timeout", 3601),
    ("spawn_timeout", "Auto"),
])
def test_bad_values_are_refused_naming_the_parameter(key, value):
    with pytest.raises(ParameterError) as err:
        build_params({key: value})
    msg = str(err.value)
    assert f"{key}: {key} must be 'auto' or a whole number from" in msg and repr(value) in msg


def test_retry_page_is_written_once_and_named_in_the_settings(tmp_path):
    from hubrunbook.hub.capacity import RETRY_PAGE, ensure_retry_page

    p = build_params({"prefix": str(tmp_path / "hub")})
    assert ensure_retry_page(p, dry_run=True).status == "would change" and not p.layout.templates_dir.exists()
    assert ensure_retry_page(p).status == "changed"
    page = p.layout.templates_dir / "429.html"
    assert page.read_text() == RETRY_PAGE and page.stat().st_mode & 0o777 == 0o644
    assert ensure_retry_page(p).status == "unchanged"
    assert hub_settings(p)["c.JupyterHub.template_paths"] == repr([str(p.layout.templates_dir)])
    page.write_text("tampered")
    assert ensure_retry_page(p).status == "changed" and page.read_text() == RETRY_PAGE
