"""Real system users (useradd/chpasswd/PAM) and a real hub verified over HTTP. Needs root.

Every user made here starts with hrb-t- and is deleted afterwards; the hub and proxy are stopped by PID.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import psutil
import pytest
from support.sandbox import TEST_ROOT, port_params

from hubrunbook.host import homes, throwaway, users
from hubrunbook.hub import probe
from hubrunbook.core.errors import PreflightError, VerificationError
from hubrunbook.host.process import start_hub, stop_hub, wait_hub_ready
from hubrunbook.install.smoke import throwaway_config
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, WOULD_CHANGE
from hubrunbook.configure.verify import check_local_deployment, notebook_dir_row

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users: needs root"),
]


def tname(tag: str) -> str:
    return f"hrb-t-{secrets.token_hex(3)}-{tag}"


def exists(name: str) -> bool:
    return users.lookup(name) is not None


def shadow(name: str) -> str | None:
    return users.shadow_hash(name)


def useradd_foreign(name: str, home_base, password: str) -> None:
    """A system user that hubrunbook did not create (as an operator would have made it)."""
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home_base / name), "--", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)


def userdel(name: str) -> None:
    if exists(name):
        uid = users.lookup(name).pw_uid  # only processes of our test user (no pkill on a minimal server)
        for proc in psutil.process_iter(["uids"]):
            if proc.info["uids"] and proc.info["uids"].real == uid:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
        subprocess.run(["userdel", "-r", "--", name], capture_output=True)


@pytest.fixture
def made(sandbox):
    """Sandbox prefix + home base; afterwards deletes every hrb-t- user the test registered in `names`."""
    home = sandbox / "home"
    home.mkdir(parents=True)
    names: list[str] = []
    yield sandbox, home, names
    for name in names:
        assert name.startswith("hrb-")
        userdel(name)


def test_ensure_users_creates_is_idempotent_and_leaves_foreign_users_alone(made):
    sandbox, home, names = made
    user, admin, foreign = tname("u"), tname("a"), tname("f")
    names += [user, admin, foreign]
    useradd_foreign(foreign, home, "foreign-pass-1")
    foreign_hash = shadow(foreign)
    from hubrunbook.core.params import build_params

    params = build_params({"prefix": str(sandbox / "pfx"), "users": [user, foreign], "admin_users": [admin],
                           "home_base": str(home), "notebook_dir": str(home) + "/{username}/notebooks"})

    # a foreign user without a notebook dir: refused before anything is created
    with pytest.raises(PreflightError, match=f"{foreign}.*existed before hubrunbook.*install -d"):
        users.ensure_users(params)
    assert not exists(user) and not exists(admin)

    # dry run after the operator fixed it: says what it would do, changes nothing
    nb_foreign = home / foreign / "notebooks"
    subprocess.run(["install", "-d", "-o", foreign, "-g", foreign, "-m", "0755", str(nb_foreign)], check=True)
    dry = users.ensure_users(params, dry_run=True)
    assert dry.status == WOULD_CHANGE and not exists(user) and not users.password_file(params, user).exists()

    first = users.ensure_users(params)
    assert first.status == CHANGED
    by_user = {r[0]: r for r in first.rows}
    assert by_user[user][1] == CHANGED and "created; password set; notebook dir created" in by_user[user][2]
    assert by_user[foreign][1] == UNCHANGED and "left as it is" in by_user[foreign][2]
    assert f"its home {home / foreign} is mode 0755, readable by other users (not changed)" in by_user[foreign][2]
    assert oct(os.stat(home / foreign).st_mode & 0o777) == "0o755"  # not ours: reported, never changed
    for name in (user, admin):
        pw = users.lookup(name)
        nb = home / name / "notebooks"
        assert pw.pw_dir == str(home / name) and pw.pw_shell == "/bin/bash"
        assert os.stat(nb).st_uid == pw.pw_uid and oct(os.stat(nb).st_mode & 0o777) == "0o700"
        assert oct(os.stat(home / name).st_mode & 0o777) == "0o700"  # private home: others cannot read the user's work
        assert users.password_matches(name, users.user_password(params, name))
    assert set(users.read_registry(params)) == {user, admin}
    assert shadow(foreign) == foreign_hash and not users.password_file(params, foreign).exists()

    second = users.ensure_users(params)
    assert second.status == UNCHANGED and {r[1] for r in second.rows} == {UNCHANGED}

    # a password changed behind our back is set again from its source
    subprocess.run(["chpasswd"], input=f"{user}:changed-elsewhere\n", text=True, check=True)
    third = users.ensure_users(params)
    assert third.status == CHANGED and {r[0]: r[2] for r in third.rows}[user].startswith("password set")
    assert users.password_matches(user, users.user_password(params, user))

    # asking for another password for the foreign user is refused, its password stays
    os.environ["HRB_T_FOREIGN_PW"] = "not-its-password"
    try:
        other = params.model_copy(update={"passwords": {foreign: "env:HRB_T_FOREIGN_PW"}})
        with pytest.raises(PreflightError, match="never changes the password"):
            users.ensure_users(other)
    finally:
        del os.environ["HRB_T_FOREIGN_PW"]
    assert shadow(foreign) == foreign_hash

    removed = users.remove_users(params, [user, admin, foreign])
    assert not exists(user) and not exists(admin) and not (home / user).exists()
    assert exists(foreign) and shadow(foreign) == foreign_hash  # never created by us: untouched
    assert {r[0]: r[1] for r in removed.rows} == {user: CHANGED, admin: CHANGED, foreign: UNCHANGED}
    assert not users.password_file(params, user).exists() and users.read_registry(params) == {}


def test_missing_home_base_fails_before_any_user_is_created(made):
    sandbox, home, names = made
    user = tname("m")
    names.append(user)
    from hubrunbook.core.params import build_params

    params = build_params({"prefix": str(sandbox / "pfx"), "users": [user], "admin_users": [],
                           "home_base": str(sandbox / "no-such-dir"),
                           "notebook_dir": str(sandbox / "no-such-dir") + "/{username}/notebooks"})
    with pytest.raises(PreflightError, match="home_base .* does not exist"):
        users.ensure_users(params)
    assert not exists(user) and users.read_registry(params) == {}


# --- a real hub, verified over HTTP --------------------------------------------------------------
HUB_EXTRA = """\
c.Authenticator.allowed_users = {allowed!r}
c.Authenticator.admin_users = {admins!r}
c.Spawner.notebook_dir = {notebook_dir!r}
c.Spawner.default_url = '/lab'
c.Spawner.cmd = [{singleuser!r}]
"""


@pytest.fixture(scope="module")
def hub(shared_install):
    """A PAM hub on free loopback ports with a user, an admin and an outsider (system user not allowed)."""
    work = TEST_ROOT / f"users-probe-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "home").mkdir(parents=True)
    user, admin, outsider = tname("u"), tname("a"), tname("o")
    params = shared_install.model_copy(update={
        **port_params(), "users": [user], "admin_users": [admin], "home_base": str(work / "home"),
        "notebook_dir": str(work / "home") + "/{username}/notebooks",
    })
    # users and passwords live in the test's own prefix, not the shared one
    own = params.model_copy(update={"prefix": str(work / "pfx")})
    outsider_params = own.model_copy(update={"users": [outsider], "admin_users": []})
    proc = None
    try:
        users.ensure_users(own)
        users.ensure_users(outsider_params)
        pid_file = work / "proxy.pid"
        (work / "jupyterhub_config.py").write_text(throwaway_config(params, work, pid_file, HUB_EXTRA.format(
            allowed={user}, admins={admin}, notebook_dir=params.notebook_dir,
            singleuser=str(params.layout.userenv_bin("jupyterhub-singleuser")),
        )))
        proc = start_hub([str(params.layout.env_bin("jupyterhub")), "-f", str(work / "jupyterhub_config.py")], cwd=work,
                         log_file=work / "jupyterhub.log", env={"CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32)},
                         proxy_pid_file=pid_file)
        wait_hub_ready(proc, params.public_url, params.port, 60)
        yield {
            "params": own, "user": user, "admin": admin, "outsider": outsider,
            "pw": {n: users.user_password(own, n) for n in (user, admin, outsider)},
        }
    finally:
        if proc is not None:
            stop_hub(proc.pid, proc.proxy_pid())
        users.remove_users(own, [user, admin, outsider])
        for name in (user, admin, outsider):
            userdel(name)
        shutil.rmtree(work, ignore_errors=True)


def verify(hub, params=None, **overrides):
    args = {"user": hub["user"], "password": hub["pw"][hub["user"]], "admin": hub["admin"],
            "admin_password": hub["pw"][hub["admin"]], "outsider": (hub["outsider"], hub["pw"][hub["outsider"]])}
    return probe.check_verification(params or hub["params"], **{**args, **overrides})


def test_verification_passes_on_a_correct_hub(hub):
    result = verify(hub)
    rows = {r[0]: r for r in result.rows}
    assert result.status == OK, result
    assert list(rows) == [
        "user logs in", "server spawns", "server runs as user in notebook dir (file owned by user)",
        "admin lists users via REST API", "wrong password refused (403)", "user not in allow list refused (403)",
        "servers started by the probe stopped",
    ]
    assert all(r[1] == OK for r in result.rows)
    assert hub["user"] in rows["admin lists users via REST API"][2]
    assert "HTTP 403" in rows["user not in allow list refused (403)"][2] and "correct password" in rows["user not in allow list refused (403)"][2]
    text = repr(result) + result._repr_html_()
    assert not any(pw in text for pw in hub["pw"].values())
    # what the user sees afterwards: no server left running, no probe file left in the notebook dir
    session = probe.login(hub["params"].public_url, hub["user"], hub["pw"][hub["user"]])
    assert probe.user_model(session, hub["params"].public_url, hub["user"])["servers"] == {}
    assert os.listdir(users.notebook_dir_for(hub["params"], hub["user"])) == []


def test_verification_reports_failures_and_still_cleans_up(hub):
    # the probe looks for the file in a dir the hub does not use, and the admin password is wrong
    elsewhere = hub["params"].model_copy(update={"notebook_dir": "/nonexistent/{username}"})
    result = verify(hub, params=elsewhere, admin_password="wrong-admin-password")
    rows = {r[0]: r for r in result.rows}
    assert result.status == FAILED
    assert rows["user logs in"][1] == OK and rows["server spawns"][1] == OK
    assert rows["server runs as user in notebook dir (file owned by user)"][1] == FAILED
    assert "not in /nonexistent/" in rows["server runs as user in notebook dir (file owned by user)"][2]
    assert rows["admin lists users via REST API"][1] == FAILED and "HTTP 403" in rows["admin lists users via REST API"][2]
    assert rows["servers started by the probe stopped"][1] == OK
    # the probe file went to the hub's real notebook dir; the probe deleted it through the API all the same
    nb = users.notebook_dir_for(hub["params"], hub["user"])
    assert not [f for f in os.listdir(nb) if f.startswith("hubrunbook-probe-")]
    shutil.rmtree(nb / ".ipynb_checkpoints", ignore_errors=True)  # jupyter-server's, made for the probe file


def test_login_failure_names_user_and_status_but_not_password(hub):
    url = hub["params"].public_url
    with pytest.raises(VerificationError) as err:
        probe.login(url, hub["user"], "Wrong-Pass-123")
    assert "HTTP 403" in str(err.value) and hub["user"] in str(err.value) and "Wrong-Pass-123" not in str(err.value)
    # a non-admin cannot list users: the admin row would catch a hub that lets everybody in
    session = probe.login(url, hub["user"], hub["pw"][hub["user"]])
    with pytest.raises(VerificationError, match="HTTP 403"):
        probe.list_users(session, url)


def test_leftovers_of_another_user_are_refused_before_anything_changes(made):
    sandbox, home, names = made
    fresh, leftover_home, leftover_group = tname("n"), tname("h"), tname("g")
    names += [fresh, leftover_home, leftover_group]
    from hubrunbook.core.params import build_params

    (home / leftover_home).mkdir()
    subprocess.run(["groupadd", "--", leftover_group], check=True)
    try:
        params = build_params({"prefix": str(sandbox / "pfx"), "users": [fresh, leftover_home, leftover_group],
                               "admin_users": [], "home_base": str(home), "notebook_dir": str(home) + "/{username}"})
        with pytest.raises(PreflightError) as err:
            users.ensure_users(params)
        assert f"home {home / leftover_home} already exists" in str(err.value)
        assert f"a group named {leftover_group} exists" in str(err.value)
        assert not exists(fresh) and not exists(leftover_home) and users.read_registry(params) == {}
    finally:
        subprocess.run(["groupdel", "--", leftover_group], capture_output=True)


# --- issue 8: root follows no symlink a user plants (H2), private homes (low), every user checked (M10), sweep (M6) --
def as_user(name: str, *argv: str) -> subprocess.CompletedProcess:
    """Run *argv* as the system user *name* (its uid, gid and groups), as that user would."""
    pw = users.lookup(name)
    return subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--reset-env",
                           "--", *argv], capture_output=True, text=True, cwd="/", timeout=30)


def owner_mode(path) -> tuple[int, str]:
    st = os.lstat(path)
    return st.st_uid, oct(st.st_mode & 0o7777)


@pytest.fixture
def two_users(made):
    """Two users hubrunbook created, notebook_dir <home>/{username}/work/notebooks; a root-owned target outside."""
    sandbox, home, names = made
    ann, bob = tname("ann"), tname("bob")
    names += [ann, bob]
    from hubrunbook.core.params import build_params

    params = build_params({"prefix": str(sandbox / "pfx"), "users": [ann, bob], "admin_users": [],
                           "home_base": str(home), "notebook_dir": str(home) + "/{username}/work/notebooks"})
    assert users.ensure_users(params).status == CHANGED
    outside = sandbox / "x"
    outside.mkdir(mode=0o755)
    return params, ann, bob, home, outside


def test_homes_are_private_and_another_user_cannot_list_them(two_users):
    params, ann, bob, home, _ = two_users
    for name in (ann, bob):
        assert owner_mode(home / name)[1] == "0o700"
        assert homes.dir_problem_as_user(users.notebook_dir_for(params, name), users.lookup(name)) is None
    peek = as_user(bob, "ls", str(home / ann))
    assert peek.returncode != 0 and "Permission denied" in peek.stderr
    assert "Permission denied" in homes.dir_problem_as_user(home / ann, users.lookup(bob))

    # a home an earlier hubrunbook made 0755 is ours: tightened, and the result says so
    os.chmod(home / ann, 0o755)
    again = users.ensure_users(params)
    assert again.status == CHANGED
    assert f"home {home / ann} made private (was 0755)" in {r[0]: r[2] for r in again.rows}[ann]
    assert owner_mode(home / ann)[1] == "0o700" and as_user(bob, "ls", str(home / ann)).returncode != 0
    assert users.ensure_users(params).status == UNCHANGED


def test_planted_symlink_in_the_middle_is_refused_not_followed(two_users):
    params, ann, bob, home, outside = two_users
    # the attack: ann replaces ~/work with a symlink to a directory outside her home
    subprocess.run(["rm", "-rf", "--", str(home / ann / "work")], check=True)
    assert as_user(ann, "ln", "-s", "--", str(outside), str(home / ann / "work")).returncode == 0
    with pytest.raises(PreflightError, match=r"work is a symlink .*not followed"):
        users.ensure_users(params)
    assert os.listdir(outside) == [] and owner_mode(outside) == (0, "0o755")  # nothing created or chowned outside
    # configure's verification, as the user, finds her dir unusable (she reaches /tmp/x but cannot write there)
    row = notebook_dir_row(params, ann)
    assert row[1] == FAILED and f"{ann} cannot enter, list and write" in row[2], row


def test_notebook_dir_swapped_for_a_symlink_is_not_followed(two_users):
    params, ann, bob, home, outside = two_users
    secret = outside / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    nb = users.notebook_dir_for(params, ann)
    subprocess.run(["rm", "-rf", "--", str(nb)], check=True)  # deterministic version of the swap race
    assert as_user(ann, "ln", "-s", "--", str(secret), str(nb)).returncode == 0
    with pytest.raises(PreflightError, match="notebook dir .* symlink .*not followed"):
        users.ensure_users(params)
    assert owner_mode(secret) == (0, "0o600")  # neither chmod nor chown reached the root file
    # the troubleshoot repair of a notebook dir goes the same way
    from hubrunbook.troubleshoot.repairs import repair_notebook_dirs

    class F:
        data = {"user": ann, "path": str(nb)}

    assert repair_notebook_dirs(params, F()).status == FAILED and owner_mode(secret) == (0, "0o600")


def test_existing_notebook_dir_of_another_user_is_not_chowned(two_users):
    params, ann, bob, home, _ = two_users
    nb = users.notebook_dir_for(params, ann)
    subprocess.run(["rm", "-rf", "--", str(nb)], check=True)
    nb.mkdir()
    bob_uid = users.lookup(bob).pw_uid
    os.chown(nb, bob_uid, users.lookup(bob).pw_gid)
    with pytest.raises(PreflightError, match=f"owned by {bob} .*never hands over"):
        users.ensure_users(params)
    assert owner_mode(nb)[0] == bob_uid


def test_outsider_of_a_killed_run_is_swept_by_the_next_run(made):
    sandbox, home, names = made
    from hubrunbook.core.params import build_params

    params = build_params({"prefix": str(sandbox / "pfx"), "users": [], "admin_users": [], "allowed_users": ["nobody1"],
                           "home_base": str(home), "notebook_dir": str(home) + "/{username}"})
    # a verification that dies by kill -9 while its outsider exists
    code = ("import sys, time; from hubrunbook.core.params import build_params; from hubrunbook.host.throwaway import "
            "temporary_outsider\n"
            f"p = build_params({{'prefix': {str(sandbox / 'pfx')!r}}})\n"
            "with temporary_outsider(p) as (name, _):\n    print(name, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        outsider = proc.stdout.readline().strip()
    finally:
        proc.kill()  # SIGKILL: no finally, no cleanup
        proc.wait()
    names.append(outsider)
    assert outsider.startswith("hrb-outsider-") and exists(outsider)
    record = throwaway.read_record(params)
    assert record[outsider]["uid"] == users.lookup(outsider).pw_uid
    assert oct(params.layout.throwaway_registry.stat().st_mode & 0o777) == "0o600"

    # an account that merely has a recorded name but another uid is not ours: left alone
    impostor = tname("imp")
    names.append(impostor)
    subprocess.run(["useradd", "--no-create-home", "--", impostor], check=True)
    record[impostor] = {"uid": users.lookup(impostor).pw_uid + 1}
    throwaway._write_record(params, record)

    dry = users.ensure_users(params, dry_run=True)
    assert dry.status == WOULD_CHANGE and exists(outsider)
    result = users.ensure_users(params)  # the start of configure's next run
    rows = {r[0]: r for r in result.rows}
    assert rows[outsider][1] == CHANGED and "deleted the throwaway account an interrupted run left" in rows[outsider][2]
    assert rows[impostor][1] == UNCHANGED and "not ours, left alone" in rows[impostor][2]
    assert not exists(outsider) and exists(impostor) and throwaway.read_record(params) == {}
    assert "deleted 1 throwaway account(s)" in result.detail
    assert users.ensure_users(params).status == UNCHANGED


def test_second_users_broken_notebook_dir_fails_verification(hub):
    params = hub["params"]
    second = tname("s")
    more = params.model_copy(update={"users": [hub["user"], second]})
    try:
        users.ensure_users(more)
        nb = users.notebook_dir_for(more, second)
        os.chown(nb, 0, 0)  # unusable for the second user: root's, 0700
        result = check_local_deployment(more)
        rows = {r[0]: r for r in result.rows}
        assert result.status == FAILED, result
        assert rows[f"{second} uses its notebook dir (as {second})"][1] == FAILED
        assert "Permission denied" in rows[f"{second} uses its notebook dir (as {second})"][2]
        assert rows[f"{hub['user']} uses its notebook dir (as {hub['user']})"][1] == OK
        assert rows["user logs in"][1] == OK and rows["server spawns"][1] == OK  # the first user's path still works
        assert result.detail == f"1 check(s) failed: {second} uses its notebook dir (as {second})"
        assert throwaway.read_record(params) == {}  # the outsider of this verification is gone, and so is its record
        os.chown(nb, users.lookup(second).pw_uid, users.lookup(second).pw_gid)
        assert check_local_deployment(more).status == OK
    finally:
        users.remove_users(more, [second])
        userdel(second)


def test_racing_symlink_swap_never_reaches_a_root_file(two_users):
    # the reported race: the user swaps ~/notebooks for a symlink to a root 0600 file while root (re)makes the
    # notebook dir (the old mkdir-then-chmod by path turned the file 0755 after 467 calls). Here a racer removes
    # each dir root makes and plants the link; the walk must meet it and refuse (the old code raised bare OSErrors
    # or chmod-ed the file). The window of the old code is microseconds: this racer did not hit it in 20000 calls
    # here, so the deterministic tests above are the proof; this one shows the new walk holds under the race.
    params, ann, bob, home, outside = two_users
    secret = outside / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    nb = home / ann / "notebooks"
    pw = users.lookup(ann)
    racer_code = ("import os, sys\nnb, target = sys.argv[1], sys.argv[2]\nwhile True:\n"
                  "    try:\n        os.rmdir(nb)\n    except OSError:\n        continue\n"
                  "    try:\n        os.symlink(target, nb)\n        os.unlink(nb)\n    except OSError:\n        pass\n")
    racer = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--reset-env",
                              "--", "/usr/bin/python3", "-c", racer_code, str(nb), str(secret)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outcomes = set()
    try:
        # at least 500 rounds, and on until the racer (a fresh python3, slow to start on a busy machine) has been met
        for n in range(50000):
            if n >= 500 and "refused" in outcomes:
                break
            try:
                homes.make_notebook_dir(nb, home / ann, pw.pw_uid, pw.pw_gid)
                outcomes.add("made")
            except PreflightError:  # refused: a symlink, or a dir that changed mid-walk
                outcomes.add("refused")
            assert owner_mode(secret) == (0, "0o600")
    finally:
        racer.kill()
        racer.wait()
    assert owner_mode(secret) == (0, "0o600") and secret.read_text() == "root's\n"
    assert "refused" in outcomes, outcomes  # the race was on: the symlink was met and refused
