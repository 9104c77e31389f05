"""hub/database.py: schema revisions and consistent, private copies of the hub database."""
from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest

from hubrunbook.core.errors import RunbookError
from hubrunbook.hub.database import copy_database, db_revision


def _db(path, rows=100):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    con.execute("INSERT INTO alembic_version VALUES ('abc123')")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, blob TEXT)")
    con.executemany("INSERT INTO users (name, blob) VALUES (?, ?)", [(f"u{i}", "x" * 2000) for i in range(rows)])
    con.commit()
    con.close()


def _private(tmp_path):
    d = tmp_path / "backups"
    d.mkdir(mode=0o700)
    return d


def test_copy_is_0600_and_equal(tmp_path):
    src = tmp_path / "hub.sqlite"
    _db(src)
    os.chmod(src, 0o644)
    dst = copy_database(src, _private(tmp_path) / "copy.sqlite")
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    assert db_revision(dst) == "abc123"
    con = sqlite3.connect(dst)
    assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 100
    con.close()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["copy.sqlite"]  # no temp file left


def test_copy_while_a_writer_commits(tmp_path):
    """The online backup copies a consistent state while another connection keeps committing (the hub running)."""
    src = tmp_path / "hub.sqlite"
    _db(src, rows=2000)
    stop = threading.Event()

    def writer():
        con = sqlite3.connect(src, timeout=30)
        i = 0
        while not stop.is_set():
            con.execute("INSERT INTO users (name, blob) VALUES (?, ?)", (f"w{i}", "y" * 2000))
            con.execute("UPDATE alembic_version SET version_num = ?", (f"rev{i}",))
            con.commit()
            i += 1
        con.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        dst = copy_database(src, _private(tmp_path) / "copy.sqlite")
    finally:
        stop.set()
        t.join()
    con = sqlite3.connect(dst)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_w = con.execute("SELECT count(*) FROM users WHERE name LIKE 'w%'").fetchone()[0]
    rev = con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    con.close()
    # each commit adds one row and names it in alembic_version: a consistent snapshot agrees with itself
    assert rev == ("abc123" if n_w == 0 else f"rev{n_w - 1}")


def test_a_symlink_at_the_destination_is_replaced_not_followed(tmp_path):
    src = tmp_path / "hub.sqlite"
    _db(src, rows=1)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    dst = _private(tmp_path) / "copy.sqlite"
    dst.symlink_to(victim)
    copy_database(src, dst)
    assert victim.read_text() == "keep me"
    assert not dst.is_symlink() and db_revision(dst) == "abc123"


@pytest.mark.parametrize("how", ["group-writable", "symlink"])
def test_refuses_a_directory_others_control(tmp_path, how):
    src = tmp_path / "hub.sqlite"
    _db(src, rows=1)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    if how == "group-writable":
        os.chmod(real, 0o770)
        d = real
    else:
        d = tmp_path / "link"
        d.symlink_to(real)
    with pytest.raises(RunbookError, match="directory|symlink"):
        copy_database(src, d / "copy.sqlite")
    assert list(real.iterdir()) == []


def test_missing_source(tmp_path):
    with pytest.raises(RunbookError, match="does not exist"):
        copy_database(tmp_path / "absent.sqlite", _private(tmp_path) / "c.sqlite")
