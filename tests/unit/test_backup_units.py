"""backup/: archives (contents, modes, unchanged re-runs, retention), their verification (damaged, incomplete and
hostile archives are refused before anything is touched), the config's relocation and the backup-age check."""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest

from hubrunbook.backup import archive, restore
from hubrunbook.backup.verify import KNOWN, ArchiveError, verify_archive
from hubrunbook.core.errors import PreflightError
from hubrunbook.core.layout import backup_archive_name
from hubrunbook.core.params import build_params
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, WOULD_CHANGE


@pytest.fixture
def params(tmp_path):
    return build_params({"prefix": str(tmp_path / "hub"), "port": 38911, "hub_port": 38912, "proxy_api_port": 38913,
                         "users": ["hrb-bk-x"], "admin_users": ["hrb-bk-a"], "service": "process", "backup_keep": 2})


def _deployment(params, users=(("hrb-bk-a", 1), ("hrb-bk-x", 0))):
    """The files of a configured prefix: a hub database with users, config, secrets, users registry."""
    lay = params.layout
    for d in (lay.state_dir, lay.secrets_dir):
        d.mkdir(parents=True, mode=0o700)
    params.config_path.parent.mkdir(parents=True)
    con = sqlite3.connect(lay.hub_db)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    con.execute("INSERT INTO alembic_version VALUES ('4621fec11365')")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, admin BOOLEAN)")
    con.executemany("INSERT INTO users (name, admin) VALUES (?, ?)", users)
    con.commit()
    con.close()
    params.config_path.write_text(f"c.JupyterHub.db_url = 'sqlite:///{lay.hub_db}'  # hubrunbook\n# by hand\n")
    lay.hub_env.write_text("CONFIGPROXY_AUTH_TOKEN=0123456789abcdef\n")
    lay.cookie_secret.write_text("ab" * 32)
    for p in (lay.hub_env, lay.cookie_secret):
        os.chmod(p, 0o600)
    lay.user_registry.write_text(json.dumps({"hrb-bk-x": {"uid": 12345, "home": "/home/hrb-bk-x"}}))


def test_backup_writes_a_private_verified_archive(params):
    _deployment(params)
    r = archive.ensure_backup(params)
    assert r.status == CHANGED, r
    path = Path(r.data["archive"])
    assert path.parent == params.layout.backups_dir and path.name.startswith("hubrunbook-backup-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(archive.sidecar(path).stat().st_mode) == 0o600
    contents = {}
    manifest = verify_archive(path, contents)
    assert manifest["schema_revision"] == "4621fec11365"
    assert manifest["users"] == [{"name": "hrb-bk-a", "admin": True}, {"name": "hrb-bk-x", "admin": False}]
    assert manifest["absent"] == ["state/hub-users.json"]
    assert contents["secrets/cookie_secret"] == params.layout.cookie_secret.read_bytes()
    assert contents["config/jupyterhub_config.py"] == params.config_path.read_bytes()
    for f in manifest["files"]:
        assert hashlib.sha256(contents[f["name"]]).hexdigest() == f["sha256"]
    # the archive's secrets are not in what the step shows
    assert "ab" * 32 not in repr(r) and "0123456789abcdef" not in repr(r)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.name + ".sha256"])  # no temp left
    assert archive.check_backup(params).status == OK


def test_a_rerun_without_changes_writes_nothing_and_a_change_writes_a_new_archive(params):
    _deployment(params)
    first = archive.ensure_backup(params)
    again = archive.ensure_backup(params)
    assert again.status == UNCHANGED and again.data["archive"] == first.data["archive"]
    con = sqlite3.connect(params.layout.hub_db)
    con.execute("INSERT INTO users (name, admin) VALUES ('hrb-bk-new', 0)")
    con.commit()
    con.close()
    third = archive.ensure_backup(params)
    assert third.status == CHANGED and third.data["archive"] != first.data["archive"]
    assert len(archive.archives(params.backup_path)) == 2


def test_dry_run_writes_nothing(params):
    _deployment(params)
    r = archive.ensure_backup(params, dry_run=True)
    assert r.status == WOULD_CHANGE and r.data["archive"] is None
    assert not params.layout.backups_dir.exists()


def test_nothing_to_back_up_is_an_error_naming_the_file(params):
    with pytest.raises(PreflightError, match="jupyterhub.sqlite .*does not exist"):
        archive.ensure_backup(params)


def test_backup_dir_must_be_ours(params, tmp_path):
    _deployment(params)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(PreflightError, match="not a directory"):
        archive.ensure_backup(params.model_copy(update={"backup_dir": str(link)}))


def test_retention_keeps_the_newest_and_nothing_else_is_touched(params):
    _deployment(params)
    d = params.layout.backups_dir
    d.mkdir(mode=0o700)
    stamps = ["20260101T000000.000000Z", "20260102T000000.000000Z", "20260103T000000.000000Z"]
    for s in stamps:
        (d / backup_archive_name(s)).write_bytes(b"x")
        archive.sidecar(d / backup_archive_name(s)).write_text("y")
    (d / "notes.txt").write_text("mine")
    (d / "jupyterhub.sqlite.abc.20250101T000000Z").write_text("a repair's copy")
    r = archive.ensure_retention(params)
    assert r.status == CHANGED and stamps[0] in r.detail
    left = sorted(p.name for p in d.iterdir())
    assert backup_archive_name(stamps[0]) not in left and backup_archive_name(stamps[0]) + ".sha256" not in left
    assert {"notes.txt", "jupyterhub.sqlite.abc.20250101T000000Z", backup_archive_name(stamps[2])} <= set(left)
    assert archive.ensure_retention(params).status == UNCHANGED


# --- verification ------------------------------------------------------------------------------------
def _good(params) -> Path:
    _deployment(params)
    return Path(archive.ensure_backup(params).data["archive"])


def _rewrite(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Write *members* as the archive at *path*, with a matching .sha256 (a forged but self-consistent archive)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    archive.sidecar(path).write_text(f"{archive.sha256_file(path)}  {path.name}\n")


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(i, tar.extractfile(i).read()) for i in tar.getmembers()]


def test_a_flipped_byte_is_refused(params):
    path = _good(params)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="damaged: its sha256"):
        verify_archive(path)


def test_a_missing_checksum_file_is_refused(params):
    path = _good(params)
    archive.sidecar(path).unlink()
    with pytest.raises(ArchiveError, match=r"\.sha256 is missing"):
        verify_archive(path)


def test_a_truncated_archive_with_a_matching_checksum_is_refused(params):
    path = _good(params)
    path.write_bytes(path.read_bytes()[:-40])
    archive.sidecar(path).write_text(f"{archive.sha256_file(path)}  {path.name}\n")
    with pytest.raises(ArchiveError, match="cannot be read|lacks"):
        verify_archive(path)


@pytest.mark.parametrize("evil", ["/etc/cron.d/x", "secrets/../../etc/passwd", "./secrets/hub.env", "symlink",
                                  "hardlink", "directory", "unlisted", "twice"])
def test_hostile_members_are_refused(params, evil):
    path = _good(params)
    members = _members(path)
    info = tarfile.TarInfo("secrets/cookie_secret")
    data = b""
    if evil == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    elif evil == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "secrets/hub.env"
    elif evil == "directory":
        info.type = tarfile.DIRTYPE
    elif evil == "unlisted":
        info.name, data = "state/extra.json", b"{}"
    elif evil == "twice":
        data = dict((i.name, d) for i, d in members)["secrets/cookie_secret"]
    else:
        info.name, data = evil, b"x"
    info.size = len(data) if info.isreg() else 0
    _rewrite(path, [*members, (info, data if info.isreg() else None)])
    with pytest.raises(ArchiveError, match="refused"):
        verify_archive(path)


def test_a_member_that_does_not_match_the_manifest_is_refused(params):
    path = _good(params)
    members = [(i, b"cd" * 32 if i.name == "secrets/cookie_secret" else d) for i, d in _members(path)]
    _rewrite(path, members)
    with pytest.raises(ArchiveError, match="secrets/cookie_secret does not match its sha256"):
        verify_archive(path)


def test_an_archive_without_manifest_is_refused(params):
    path = _good(params)
    _rewrite(path, _members(path)[1:])
    with pytest.raises(ArchiveError, match="does not start with manifest.json"):
        verify_archive(path)


def test_a_symlink_is_not_followed_to_an_archive(params, tmp_path):
    path = _good(params)
    link = tmp_path / "link.tar.gz"
    link.symlink_to(path)
    with pytest.raises(ArchiveError, match="not a regular file"):
        verify_archive(link)


def test_every_part_is_a_known_member(params):
    assert [m for m, *_ in archive.parts(params)] == list(KNOWN)


# --- restore (the parts that need no hub) ----------------------------------------------------------------
def test_a_damaged_archive_stops_the_restore_before_anything_changes(params, tmp_path):
    path = _good(params)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    target = build_params({"prefix": str(tmp_path / "new"), "restore_archive": str(path), "service": "process"})
    for step in (restore.check_restore_archive, restore.ensure_restored):
        with pytest.raises(ArchiveError):
            step(target)
    assert not (tmp_path / "new").exists()


def test_restore_needs_an_archive_named(params):
    with pytest.raises(PreflightError, match="restore_archive is empty"):
        restore.resolve_archive(params)
    with pytest.raises(PreflightError, match="holds no backup archive"):
        restore.resolve_archive(params.model_copy(update={"restore_archive": "latest"}))


def test_relocation_moves_only_what_names_the_old_prefix_or_a_port(params, tmp_path):
    from hubrunbook.hub.config import MARK

    old = "/srv/old"
    text = "\n".join([
        f"c.JupyterHub.db_url = 'sqlite:///{old}/state/jupyterhub.sqlite'{MARK}",
        f"c.JupyterHub.hub_port = 9999{MARK}",
        f"c.Authenticator.admin_users = {{'someone-else'}}{MARK}",
        f"c.Spawner.default_url = '/tree'{MARK}",
        "c.JupyterHub.db_url = 'by hand'",
    ])
    moved = restore.relocation(params, text, old)
    assert moved == {"c.JupyterHub.db_url": repr(f"sqlite:///{params.layout.hub_db}"), "c.JupyterHub.hub_port": "38912"}


@pytest.mark.parametrize("values,msg", [
    ({"backup_keep": 0}, "backup_keep must be between 1 and 1000"),
    ({"backup_dir": "relative"}, "backup_dir must be an absolute path"),
    ({"backup_dir": "/etc/hub"}, "backup_dir must not lie in the system directory /etc"),
    ({"backup_dir": "/var/tmp"}, "backup_dir must be a directory of its own"),
    ({"backup_max_age_hours": -1}, "backup_max_age_hours must be between 0"),
    ({"restore_archive": "/srv/x.zip"}, "restore_archive must be a backup archive"),
])
def test_parameters_are_validated(values, msg):
    from hubrunbook.core.errors import ParameterError

    with pytest.raises(ParameterError, match=msg):
        build_params(values)


# --- notebook dirs (backup_notebooks) -------------------------------------------------------------------------
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns files to another uid")
def test_notebook_walk_takes_only_the_users_own_files_and_follows_no_link(tmp_path):
    from hubrunbook.backup import notebooks

    top = tmp_path / "nb"
    (top / "sub").mkdir(parents=True)
    (top / "a.ipynb").write_text("{}")
    (top / "sub" / "b.py").write_text("print(1)")
    (top / "root-owned").write_text("root's")          # e.g. a hard link to a file the user may not read
    (top / "shadow").symlink_to("/etc/shadow")
    (top / "sublink").symlink_to("/etc")
    os.mkfifo(top / "fifo")
    for p in (top, top / "sub", top / "a.ipynb", top / "sub" / "b.py", top / "fifo"):
        os.lchown(p, NOBODY, NOBODY)
    os.chmod(top / "a.ipynb", 0o640)
    out, skipped = {}, []
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        notebooks._walk(fd, "notebooks/u", NOBODY, out, skipped)
    finally:
        os.close(fd)
    assert out == {"notebooks/u/a.ipynb": (b"{}", 0o640), "notebooks/u/sub/b.py": (b"print(1)", 0o644)}
    text = "\n".join(skipped)
    assert "root-owned: owned by uid 0" in text and "shadow: symlink" in text and "sublink: symlink" in text
    assert "fifo: special file" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="chowns files to another uid")
def test_notebook_write_creates_as_the_user_and_keeps_existing_files(tmp_path):
    import pwd

    from hubrunbook.backup import notebooks

    top = tmp_path / "nb"
    top.mkdir()
    os.chown(top, NOBODY, NOBODY)
    (top / "kept.txt").write_text("newer work")
    (top / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    pw = pwd.getpwuid(NOBODY)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert notebooks._write(fd, "deep/er/new.ipynb", b"{}", 0o640, pw, top)
        assert not notebooks._write(fd, "kept.txt", b"old", 0o644, pw, top)
        with pytest.raises(PreflightError, match="symlink"):
            notebooks._write(fd, "link/x", b"x", 0o644, pw, top)
    finally:
        os.close(fd)
    new = top / "deep" / "er" / "new.ipynb"
    assert new.read_bytes() == b"{}" and stat.S_IMODE(new.stat().st_mode) == 0o640
    assert new.stat().st_uid == NOBODY and (top / "deep").stat().st_uid == NOBODY
    assert (top / "kept.txt").read_text() == "newer work" and list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("name,ok", [("notebooks/hrb-a/x.ipynb", True), ("notebooks/hrb-a/d/x", True),
                                     ("notebooks/Root!/x", False), ("notebooks/hrb-a", False), ("homes/a/x", False)])
def test_notebook_member_names(name, ok):
    from hubrunbook.backup.notebooks import is_notebook_member

    assert is_notebook_member(name) is ok


def test_latest_is_the_newest_backup_never_a_pre_restore_archive(params):
    d = params.backup_path
    d.mkdir(parents=True, mode=0o700)
    for name in (backup_archive_name("20260101T000000.000000Z"), backup_archive_name("20260102T000000.000000Z"),
                 backup_archive_name("20260103T000000.000000Z", "pre-restore")):
        (d / name).write_bytes(b"x")
    latest = restore.resolve_archive(params.model_copy(update={"restore_archive": "latest"}))
    assert latest.name == backup_archive_name("20260102T000000.000000Z")
