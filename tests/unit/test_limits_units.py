"""Limits per user (hub/limits.py): the parameters, the refusal without systemd, the 'auto' formula, the config lines,
the unit's properties, the enforcement probe's reading and the OOM lines of the journal."""
from __future__ import annotations

import ast

import pytest

from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params
from hubrunbook.core.steps import OK, SKIPPED
from hubrunbook.hub import hubguard, limits
from hubrunbook.hub.config import hub_settings
from hubrunbook.oauth import settings as oauth

NO_SYSTEMD = "systemd is not PID 1 on this machine (/run/systemd/system is missing)"


def make(tmp_path, **values):
    return build_params({"prefix": str(tmp_path / "p"), **values})


@pytest.fixture
def systemd_here(monkeypatch):
    """As on a server booted with systemd, the hub its unit."""
    monkeypatch.setattr(limits, "why_no_systemd", lambda params: None)


@pytest.fixture
def no_systemd(monkeypatch):
    monkeypatch.setattr(limits, "why_no_systemd", lambda params: NO_SYSTEMD)


# --- parameters ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, want", [("auto", "auto"), ("", ""), ("unlimited", "unlimited"), ("256M", "256M"),
                                         ("2g", "2G"), ("1.5G", "1.5G"), ("131072K", "131072K"), ("1T", "1T")])
def test_mem_limit_accepts_sizes_auto_and_none(tmp_path, value, want):
    assert make(tmp_path, mem_limit=value).mem_limit == want


@pytest.mark.parametrize("value, says", [
    ("2GB", "a number with K, M, G or T"), ("lots", "a number with K, M, G or T"), ("-1G", "a number with K"),
    ("64M", "below 128M"), (2048, "quoted string"), ("1 G", "a number with K"),
])
def test_mem_limit_refuses_what_is_not_a_size_naming_the_parameter(tmp_path, value, says):
    with pytest.raises(ParameterError) as err:
        make(tmp_path, mem_limit=value)
    assert "mem_limit" in str(err.value) and says in str(err.value) and "nothing was changed" in str(err.value)


@pytest.mark.parametrize("value", [0, 0.5, 1, 1.5, 16])
def test_cpu_limit_accepts_cores(tmp_path, value):
    assert make(tmp_path, cpu_limit=value).cpu_limit == float(value)


@pytest.mark.parametrize("value", [-1, 0.001, 5000, True, "1.5"])
def test_cpu_limit_refuses_the_rest(tmp_path, value):
    with pytest.raises(ParameterError, match="cpu_limit"):
        make(tmp_path, cpu_limit=value)


@pytest.mark.parametrize("value", [0, -3, 10001, 2.5])
def test_expected_users_is_a_whole_number_from_1(tmp_path, value):
    with pytest.raises(ParameterError, match="expected_users"):
        make(tmp_path, expected_users=value)


def test_parse_size_is_in_powers_of_1024_as_jupyterhub_reads_it():
    assert limits.parse_size("256M") == 268435456
    assert limits.parse_size("1.5G") == 1610612736
    with pytest.raises(ValueError):
        limits.parse_size("256MB")


# --- 'auto' --------------------------------------------------------------------------------------------------------
def test_auto_is_ram_less_headroom_divided_by_expected_users():
    mib, how = limits.auto_mem_mib(24576, 10)  # 24 GiB: headroom 10 % = 2457 MiB
    assert mib == (24576 - 2457) // 10 // 64 * 64 == 2176
    assert "24576 MiB RAM − 2457 MiB headroom) / 10 expected users" in how
    assert limits.auto_mem_mib(8192, 1)[0] == (8192 - 1024) // 64 * 64  # headroom at least 1 GiB
    small, how = limits.auto_mem_mib(2048, 10)
    assert small == limits.AUTO_FLOOR_MIB and "floor" in how
    assert limits.mib_text(2176) == "2176M" and limits.mib_text(2048) == "2G"


# --- where it applies ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, named", [({"mem_limit": "256M"}, "mem_limit '256M'"),
                                           ({"cpu_limit": 0.5}, "cpu_limit 0.5"),
                                           ({"mem_limit": "1G", "cpu_limit": 2}, "mem_limit '1G' and cpu_limit 2")])
def test_explicit_limits_are_refused_without_systemd_with_the_reason(tmp_path, values, named):
    with pytest.raises(PreflightError) as err:
        limits.resolve_limits(make(tmp_path, **values), why_not=NO_SYSTEMD)
    text = str(err.value)
    assert text.startswith(named) and NO_SYSTEMD in text and "Nothing was changed" in text


def test_auto_without_systemd_is_no_limit_with_a_warning_not_silence(tmp_path):
    lim = limits.resolve_limits(make(tmp_path), why_not=NO_SYSTEMD)
    assert lim.spawner == "local" and lim.mem_mib is None and lim.cpu is None
    assert "WARNING: mem_limit 'auto' means no memory limit here" in lim.summary() and NO_SYSTEMD in lim.summary()
    # '' means no limit, and says nothing more where nothing could limit anyway
    assert limits.resolve_limits(make(tmp_path, mem_limit=""), why_not=NO_SYSTEMD).warnings == ()


def test_the_hub_as_a_managed_process_has_no_units(tmp_path):
    assert "service: 'process'" in limits.why_no_systemd(make(tmp_path, service="process"))


def test_limits_under_systemd(tmp_path):
    lim = limits.resolve_limits(make(tmp_path, mem_limit="256M", cpu_limit=0.5), why_not=None)
    assert (lim.spawner, lim.mem_bytes, lim.cpu) == ("systemd", 268435456, 0.5)
    auto = limits.resolve_limits(make(tmp_path, expected_users=4), why_not=None, total_mib=16384)
    assert auto.mem_mib == (16384 - 1638) // 4 // 64 * 64 and "auto:" in auto.summary()
    none = limits.resolve_limits(make(tmp_path, mem_limit="unlimited"), why_not=None)
    assert none.mem_mib is None and "WARNING: no memory limit" in none.summary()


# --- config lines --------------------------------------------------------------------------------------------------
def test_config_lines_under_systemd(tmp_path, systemd_here):
    p = make(tmp_path, mem_limit="256M", cpu_limit=0.5, user_shell="/bin/zsh", service_name="hub2")
    lines = {k: ast.literal_eval(v) for k, v in limits.limit_settings(p).items() if v is not None}
    assert lines == {
        "c.Spawner.mem_limit": "256M", "c.Spawner.cpu_limit": 0.5,
        "c.SystemdSpawner.unit_name_template": "hub2-singleuser-{USERNAME}",
        "c.SystemdSpawner.dynamic_users": False, "c.SystemdSpawner.default_shell": "/bin/zsh",
        "c.SystemdSpawner.unit_extra_properties": {"OOMPolicy": "stop", "MemorySwapMax": "0"},
    }
    settings = hub_settings(p)
    assert ast.literal_eval(settings["c.JupyterHub.spawner_class"]) == "hubrunbook_hub_auth.SystemdSpawner"
    assert ast.literal_eval(settings["c.Spawner.cmd"]) == [str(p.layout.userenv_bin("jupyterhub-singleuser"))]
    assert limits.unit_name(p, "demo") == "hub2-singleuser-demo.service"
    # no limit: the line goes, the unit keeps OOMPolicy=stop
    free = limits.limit_settings(make(tmp_path, mem_limit=""))
    assert free["c.Spawner.mem_limit"] is None and free["c.Spawner.cpu_limit"] is None
    assert ast.literal_eval(free["c.SystemdSpawner.unit_extra_properties"]) == {"OOMPolicy": "stop"}


def test_config_lines_without_systemd_remove_ours_and_keep_the_local_spawner(tmp_path, no_systemd):
    p = make(tmp_path)
    assert set(limits.limit_settings(p).values()) == {None}
    assert ast.literal_eval(hub_settings(p)["c.JupyterHub.spawner_class"]) == hubguard.SPAWNER_CLASS
    with pytest.raises(PreflightError, match="mem_limit '2G' cannot be enforced here"):
        hub_settings(make(tmp_path, mem_limit="2G"))


def test_configure_and_oauth_name_the_same_spawner_under_systemd(tmp_path, systemd_here):
    p = make(tmp_path, oauth_allowed_users=["alice"])
    assert hub_settings(p)["c.JupyterHub.spawner_class"] == oauth.oauth_settings(p)["c.JupyterHub.spawner_class"] \
        == repr(limits.SYSTEMD_SPAWNER)


def test_hub_module_defines_the_guarded_systemd_spawner():
    tree = ast.parse(hubguard.HUB_MODULE_SOURCE)
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    assert classes["SystemdSpawner"] == ["_GuardedSpawner", "_SystemdSpawner"]
    assert classes["LocalProcessSpawner"] == ["_GuardedSpawner", "_LocalProcessSpawner"]
    assert "from systemdspawner import SystemdSpawner as _SystemdSpawner" in hubguard.HUB_MODULE_SOURCE


def test_preflight_row_refuses_an_explicit_limit_without_systemd(tmp_path, no_systemd):
    from hubrunbook.core.steps import FAILED
    from hubrunbook.host.preflight import limits_row

    assert limits_row(make(tmp_path, cpu_limit=1.5))[1:2] == (FAILED,)
    name, status, detail = limits_row(make(tmp_path))
    assert status == OK and "WARNING" in detail


# --- the unit and the kernel ---------------------------------------------------------------------------------------
def test_timespans_as_systemctl_show_prints_them():
    assert limits.parse_timespan("500ms") == 0.5
    assert limits.parse_timespan("1.500000s") == 1.5
    assert limits.parse_timespan("1min 30s") == 90
    assert limits.parse_timespan("infinity") is None and limits.parse_timespan("") is None


def test_unit_properties_against_the_limits(tmp_path):
    lim = limits.resolve_limits(make(tmp_path, mem_limit="256M", cpu_limit=0.5), why_not=None)
    good = {"MemoryMax": "268435456", "CPUQuotaPerSecUSec": "500ms", "OOMPolicy": "stop", "ActiveState": "active"}
    assert limits.unit_limits_problems(good, lim) == []
    bad = limits.unit_limits_problems({"MemoryMax": "infinity", "CPUQuotaPerSecUSec": "infinity",
                                       "OOMPolicy": "continue"}, lim)
    assert len(bad) == 3 and "MemoryMax is infinity, wanted 268435456" in bad[0]
    free = limits.resolve_limits(make(tmp_path, mem_limit=""), why_not=None)
    assert limits.unit_limits_problems({"MemoryMax": "infinity", "CPUQuotaPerSecUSec": "infinity"}, free) == []
    cores = limits.resolve_limits(make(tmp_path, cpu_limit=1.5), why_not=None, total_mib=4096)
    assert limits.unit_limits_problems({"MemoryMax": str(cores.mem_bytes), "CPUQuotaPerSecUSec": "1.500000s"},
                                       cores) == []


RUN_HEAD = "Running as unit: hubrunbook-limits-probe-7.service\n"


@pytest.mark.parametrize("stderr", [
    RUN_HEAD + "Finished with result: oom-kill\nMain processes terminated with: code=killed/status=KILL\n",  # 252
    RUN_HEAD + "Finished with result: oom-kill\nMain processes terminated with: code=killed, status=9/KILL\n"
               "Service runtime: 412ms\nCPU time consumed: 390ms\nMemory peak: 32.0M (swap: 0B)\n",
    RUN_HEAD + "Finished with result: signal\nMain processes terminated with: code=killed/status=KILL\n",
])
def test_a_killed_probe_means_enforced(stderr):
    got = limits.interpret_memory_probe(1, "", stderr)
    assert got.enforced is True and got.text().startswith("enforced on this machine") and "killed" in got.detail


def test_a_probe_that_survives_means_not_enforced():
    # measured in the Debian 12 system-test container (systemd 252 inside systemd-nspawn)
    got = limits.interpret_memory_probe(0, "survived 160 MiB\n", "Running as unit: hubrunbook-limits-probe-3090.service\n"
                                        "Finished with result: success\nMain processes terminated with: "
                                        "code=exited/status=0\nService runtime: 166ms\n")
    assert got.enforced is False and got.text().startswith("NOT enforced on this machine") and "survived" in got.detail


def test_a_probe_that_failed_otherwise_is_unknown_never_enforced():
    got = limits.interpret_memory_probe(1, "", "Failed to start transient service unit: Access denied\n")
    assert got.enforced is None and "could not tell" in got.text() and "Access denied" in got.evidence


def test_no_probe_without_systemd(monkeypatch):
    from hubrunbook.host import systemd

    monkeypatch.setattr(systemd, "booted", lambda: False)
    got = limits.memory_probe()
    assert got.enforced is False and "not PID 1" in got.detail


def test_the_step_without_systemd_is_skipped_and_says_not_enforced(tmp_path, no_systemd):
    result = limits.check_user_limits(make(tmp_path))
    assert result.status == SKIPPED and "NOT enforced on this machine" in result.detail and "WARNING" in result.detail
    assert limits.check_user_limits(make(tmp_path), dry_run=True).status == SKIPPED


# --- servers killed for their memory -------------------------------------------------------------------------------
# as systemd 252 and the kernel write them (journalctl -o short-iso)
OOM_LINES = [
    "2026-12-04T20:31:07+0000 srv systemd[1]: jupyterhub-singleuser-demo.service: A process of this unit has been "
    "killed by the OOM killer.",
    "2026-12-04T20:31:07+0000 srv systemd[1]: jupyterhub-singleuser-demo.service: Failed with result 'oom-kill'.",
    "2026-12-04T20:40:00+0000 srv kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "mems_allowed=0,oom_memcg=/system.slice/jupyterhub-singleuser-ann.service,task_memcg=/system.slice/"
    "jupyterhub-singleuser-ann.service,task=python3,pid=4242,uid=1001",
    "2026-12-04T20:41:00+0000 srv systemd[1]: other-singleuser-bob.service: A process of this unit has been killed "
    "by the OOM killer.",
    "2026-12-04T20:42:00+0000 srv systemd[1]: jupyterhub.service: Main process exited, code=killed, status=9/KILL",
]


def test_oom_lines_name_the_user_of_our_units_only():
    found = limits.oom_kills(OOM_LINES, "jupyterhub")
    assert set(found) == {"demo", "ann"}
    assert found["demo"].endswith("Failed with result 'oom-kill'.") and "task=python3" in found["ann"]
    assert limits.oom_kills(OOM_LINES, "other") == {"bob": OOM_LINES[3]}
