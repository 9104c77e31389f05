"""userenv.ipynb end to end as root: the deploy chain builds a user env with uv, users' servers spawn from it, the
listed packages import in a kernel as the user (and in a second kernel every user is offered); a converged re-run
changes nothing; adding and then removing a package changes exactly that, while a running server keeps working;
a package that fails to import is found by troubleshoot with its import error, and repaired."""
import json
import os

import psutil
import pytest

from hubrunbook.core.params import build_params
from hubrunbook.hub import probe
from hubrunbook.host.users import user_password
from hubrunbook.userenv import build, verify
from support.runbook import run_runbook, step_statuses
from support.sandbox import port_params, reset_sandbox, teardown_sandbox

pytestmark = pytest.mark.integration

USER, ADMIN = f"hrb-ue-u{os.getpid()}", f"hrb-ue-a{os.getpid()}"
# small pure-Python packages that nothing in jupyterlab/jupyterhub/ipykernel requires on Python ≥ 3.11: adding or
# removing one is visible as exactly that package
# (BASE is pure Python: the import-failure test edits its __init__.py; tomli's is compiled by mypyc, so the .so
# would be imported and the edit never seen)
BASE, EXTRA, KERNEL_PKG = "text-unidecode", "tomli", "toolz"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """install → userenv → configure on a sandbox (the deploy chain), a second kernel with its own package."""
    tmp = tmp_path_factory.mktemp("userenv")
    prefix = reset_sandbox(f"userenv-it-{os.getpid()}")
    values = port_params(prefix=str(prefix), users=[USER], admin_users=[ADMIN], user_packages=[BASE],
                         user_kernels={"second": [KERNEL_PKG]})
    params = build_params(values)
    try:
        runs = {}
        for name in ("install", "userenv", "configure"):
            runs[name] = run_runbook(name, values, tmp)
            assert runs[name].ok, runs[name].error[-3000:]
        yield {"values": values, "params": params, "tmp": tmp, "runs": runs}
    finally:
        teardown_sandbox(params)


def step_text(out, step: str) -> str:
    """The plain-text output of *step*'s cell (its status line and table) in an executed notebook."""
    nb = json.loads(out.read_text())
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            text = "".join(o.get("data", {}).get("text/plain", ""))
            if f"] {step}:" in text.split("\n", 1)[0]:
                return text
    return ""


def freeze(params) -> dict:
    return build.installed(params.layout.userenv_dir, params)


def test_chain_builds_the_user_env_and_users_spawn_from_it(deployment):
    params, runs = deployment["params"], deployment["runs"]
    st = step_statuses(runs["userenv"].out)
    assert st["ensure_user_env"] == "changed" and st["ensure_user_kernels"] == "changed", st
    assert st["check_user_imports"] == "ok", st  # no hub yet: as nobody
    assert "import as nobody (no hub answers yet" in step_text(runs["userenv"].out, "check_user_imports")
    # the hub env keeps only what the hub needs
    assert not list(params.layout.env_dir.glob("lib/python3*/site-packages/jupyterlab"))
    have = freeze(params)
    assert have["jupyterhub"] == params.jupyterhub_version and have["jupyterlab"] == params.jupyterlab_version
    assert BASE in have and KERNEL_PKG not in have  # the second kernel's package lives in its own venv
    # every directory users pass on the way to the user env's python is enterable by them
    ok, why = build.world_runnable(params.layout.userenv_bin("python"))
    assert ok, why
    # configure's verification: imports in a real kernel of a spawned server, as the user, in both kernels
    conf = step_statuses(runs["configure"].out)
    assert conf["check_user_imports"] == "ok", conf
    text = step_text(runs["configure"].out, "check_user_imports")
    assert f"ok: import text_unidecode (in a python3 kernel as {USER})" in text, text
    assert f"ok: import tlz, toolz (in a second kernel as {USER})" in text, text  # every top-level module


def test_a_spawned_server_runs_the_user_envs_singleuser_and_offers_the_second_kernel(deployment):
    params = deployment["params"]
    url = params.public_url
    session = probe.login(url, USER, user_password(params, USER))
    probe.start_server(session, url, USER)
    try:
        procs = [p for p in psutil.process_iter(["username", "cmdline"]) if p.info["username"] == USER
                 and any("jupyterhub-singleuser" in c for c in p.info["cmdline"] or [])]
        assert procs, f"no jupyterhub-singleuser runs as {USER}"
        assert any(str(params.layout.userenv_dir) in c for c in procs[0].info["cmdline"]), procs[0].info["cmdline"]
        probe.open_user_server(session, url, USER)
        specs = session.get(f"{url}/user/{USER}/api/kernelspecs", timeout=30).json()["kernelspecs"]
        assert {"python3", "second"} <= set(specs), sorted(specs)
        argv = specs["second"]["spec"]["argv"]
        assert argv[0] == str(params.layout.user_kernel_dir("second") / "bin" / "python")
    finally:
        probe.stop_server(session, url, USER)


def test_a_converged_rerun_changes_nothing(deployment):
    params = deployment["params"]
    lock, before = params.layout.userenv_lock.read_text(), freeze(params)
    run = run_runbook("userenv", deployment["values"], deployment["tmp"])
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert set(st.values()) <= {"unchanged", "ok"}, st
    assert "verified: installed = compiled, runs as nobody" in step_text(run.out, "ensure_user_env")
    assert params.layout.userenv_lock.read_text() == lock and freeze(params) == before
    # the hub answers: the verification spawned and imported in kernels as the user
    text = step_text(run.out, "check_user_imports")
    assert f"in a python3 kernel as {USER}" in text and f"in a second kernel as {USER}" in text, text


def test_adding_then_removing_a_package_changes_exactly_that_while_a_server_runs(deployment):
    params, values, tmp = deployment["params"], deployment["values"], deployment["tmp"]
    before = freeze(params)
    url = params.public_url
    session = probe.login(url, USER, user_password(params, USER))
    probe.start_server(session, url, USER)  # a server from before the change
    try:
        added = run_runbook("userenv", {**values, "user_packages": [BASE, EXTRA]}, tmp)
        assert added.ok, added.error[-3000:]
        assert step_statuses(added.out)["ensure_user_env"] == "changed"
        after = freeze(params)
        assert {k: v for k, v in after.items() if k not in before} == {EXTRA: after[EXTRA]}
        assert {k: v for k, v in before.items() if k in after and after[k] != v} == {}
        assert set(before) - set(after) == set()
        assert f"+{EXTRA} {after[EXTRA]}" in step_text(added.out, "ensure_user_env")
        # the server from before still runs, and a new kernel in it sees the new package
        assert probe.server_ready(session, url, USER)
        out = verify.execute_in_kernel(session, url, USER, "python3", verify.import_code([EXTRA]))
        assert verify.parse_imports(out)[EXTRA].startswith("ok"), out
        removed = run_runbook("userenv", values, tmp)
        assert removed.ok, removed.error[-3000:]
        assert f"-{EXTRA} {after[EXTRA]}" in step_text(removed.out, "ensure_user_env")
        assert freeze(params) == before  # exactly the package went, nothing else moved
        assert probe.server_ready(session, url, USER)
    finally:
        probe.stop_server(session, url, USER)


def test_a_package_that_fails_to_import_is_found_with_its_error_and_repaired(deployment):
    from hubrunbook.troubleshoot.catalog import Context
    from hubrunbook.troubleshoot.checks import install
    from hubrunbook.troubleshoot.repairs import repair_user_env

    params = deployment["params"]
    (init,) = params.layout.userenv_dir.glob("lib/python3*/site-packages/text_unidecode/__init__.py")
    good = init.read_text()
    init.write_text('raise ImportError("broken by the userenv test")\n')
    try:
        found = install.check_user_packages(Context(params))
        assert [(f.id, f.data["package"]) for f in found] == [("user-package-import", BASE)], found
        assert "ImportError: broken by the userenv test" in found[0].evidence
        # the verification step says so too, as the user in a kernel
        res = verify.check_user_imports(params)
        assert res.status == "failed" and "broken by the userenv test" in repr(res), res
        fixed = repair_user_env(params, found[0])
        assert fixed.status == "changed" and f"reinstalled {BASE}" in fixed.detail, fixed
        assert install.check_user_packages(Context(params)) == []
    finally:
        if "broken by the userenv test" in init.read_text():
            init.write_text(good)


def test_a_user_env_with_another_jupyterhub_is_found(deployment):
    from hubrunbook.troubleshoot.catalog import Context
    from hubrunbook.troubleshoot.checks import install

    params = deployment["params"]
    other = params.model_copy(update={"jupyterhub_version": "5.5.4"})  # what the user env is checked against
    ok, why = build.check_user_env(other)
    assert not ok and f"jupyterhub {params.jupyterhub_version} in the user env, the hub runs 5.5.4" in why
    found = install.check_user_env(Context(other))
    assert [f.id for f in found] == ["user-env"] and "jupyterhub 6.1.1 in the user env" in found[0].seen, found
    # and a marker file is never what convergence rests on: removing it changes nothing the check sees
    params.layout.userenv_marker.unlink()
    assert build.check_user_env(params) == (True, f"jupyterhub {params.jupyterhub_version}")
    assert params.layout.userenv_lock.read_text().count("==") > 10  # the complete pinned set, not the wish list
