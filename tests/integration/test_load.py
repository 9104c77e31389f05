"""Many first logins at once on this machine (issue 8, load): every user gets to JupyterLab, none times out.

JupyterHub's defaults failed here: 20 users logging in at once on 2 cores, 6 of 20 (cold caches) or all 20 (cold and
busy) spawns hit Spawner.http_timeout (30 s). The hub deployed by the product sets concurrent_spawn_limit and the
spawn timeouts from the machine's cores and memory (capacity.py); these tests log real users in through the proxy
as browsers do (tests/support/load.py) and assert what the users see, never how long it took.
"""
from __future__ import annotations

import os
import re

import pytest

from support.load import LoadDeployment, burst, summary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns servers as them: needs root"),
]

CROWD = 20


@pytest.fixture(scope="module")
def crowd(shared_install):
    """A hub with 20 fresh users (hrb-ld<pid>-NN, made by ensure_users with generated passwords); removed afterwards."""
    d = LoadDeployment(shared_install, CROWD)
    try:
        yield d.build()
    finally:
        d.teardown()


def test_the_hub_gets_the_limits_derived_from_this_machine(crowd):
    cap = crowd.capacity()
    assert crowd.config_value("c.JupyterHub.concurrent_spawn_limit") == str(cap.concurrent_spawn_limit)
    assert crowd.config_value("c.Spawner.http_timeout") == str(cap.spawn_timeout)
    assert crowd.config_value("c.Spawner.start_timeout") == str(cap.spawn_timeout)
    assert cap.spawn_timeout > 30, "JupyterHub's default http_timeout is what failed under load"


def test_twenty_first_logins_at_once_all_reach_jupyterlab(crowd):
    visits = burst(crowd.params.public_url, crowd.credentials())
    result = summary(visits)
    assert result["ok"] == CROWD, f"{CROWD - result['ok']} of {CROWD} users did not get their lab: {result['failures']}"
    # each server really is the user's: the hub lists every one of them as ready
    from hubrunbook.hub import probe

    name, password = crowd.credentials()[0]
    session = probe.login(crowd.params.public_url, name, password)
    assert probe.server_ready(session, crowd.params.public_url, name)


def test_spawns_beyond_the_limit_are_told_to_retry_and_get_in_after_waiting(shared_install):
    """With room for one spawn at a time, three users at once: the others get 429 + Retry-After, wait, and get in."""
    d = LoadDeployment(shared_install, 3, tag="ldq", concurrent_spawn_limit=1)
    try:
        d.build()
        assert d.config_value("c.JupyterHub.concurrent_spawn_limit") == "1"
        visits = burst(d.params.public_url, d.credentials())
    finally:
        d.teardown()
    result = summary(visits)
    assert result["ok"] == 3, result["failures"]
    assert result["throttled_users"] >= 1, "nobody was throttled: the limit of 1 concurrent spawn was not in force"
    for v in visits:
        if v.throttled:  # what the hub's 429 page tells the user, and the header a client waits by
            assert "Too many users trying to log in right now. Try again in" in v.told, v.told
            assert re.search(r"\(Retry-After: \d+\)$", v.told), v.told
            assert v.page_retries, "the 429 page lacks the countdown that asks again (templates/429.html)"
