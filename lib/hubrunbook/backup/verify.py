"""Verify a backup archive before anything is touched: its own checksum, every member's name and type, the manifest,
every member's size and sha256.

A member is accepted only when it is a regular file with a relative name of plain parts (no absolute path, no
``..``, no empty or ``.`` part, no backslash or control character), listed in the manifest once; links (hard or
symbolic), devices, FIFOs and directories are refused, as is any member the manifest does not list or a listed one
that is missing. Nothing is extracted here: restore.py reads the verified members' bytes and writes them itself.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import zlib
from pathlib import Path

from hubrunbook.backup.archive import CHUNK, FORMAT, MANIFEST, sha256_file, sidecar
from hubrunbook.core.errors import RunbookError

MAX_MANIFEST = 1 << 20
# every member an archive may hold (archive.parts), the first four required
KNOWN = ("hub/jupyterhub.sqlite", "config/jupyterhub_config.py", "secrets/hub.env", "secrets/cookie_secret",
         "state/users.json", "state/hub-users.json")


class ArchiveError(RunbookError):
    """The archive is damaged, incomplete or not one of ours; nothing was changed."""

    next_action = ("nothing was changed; use another copy of the archive or an older one (restore_archive), and "
                   "check the disk or transfer that damaged this one")


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why *info* may not be restored, or None."""
    name = info.name
    if not name or name.startswith("/") or "\\" in name or any(not ch.isprintable() for ch in name):
        return f"member {name!r} has an absolute or unprintable name"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return f"member {name!r} has an empty, '.' or '..' part"
    if info.issym() or info.islnk():
        return f"member {name!r} is a link (to {info.linkname!r})"
    if not info.isreg():
        return f"member {name!r} is not a regular file (type {info.type!r})"
    return None


def _expected_sha(archive: Path) -> str:
    side = sidecar(archive)
    try:
        text = side.read_text()
    except FileNotFoundError:
        raise ArchiveError(f"{side} is missing: the archive's checksum cannot be checked; keep the .sha256 file "
                           "beside its archive") from None
    words = text.split()
    if len(words) != 2 or words[1] != archive.name or len(words[0]) != 64:
        raise ArchiveError(f"{side} is not the checksum of {archive.name} (expected '<sha256>  {archive.name}')")
    return words[0]


def verify_archive(archive: Path, into: dict[str, bytes] | None = None) -> dict:
    """The archive's manifest, once everything in it is proven intact; raise ArchiveError naming the first problem.

    With *into*, the members' bytes are put there, from the same reading that checked them (restore writes those,
    never a second reading of a file someone could have swapped in between)."""
    archive = Path(archive)
    try:
        st = os.lstat(archive)
    except FileNotFoundError:
        raise ArchiveError(f"{archive} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"{archive} is not a regular file (a symlink or a directory); name the archive itself")
    want = _expected_sha(archive)
    have = sha256_file(archive)
    if have != want:
        raise ArchiveError(f"{archive} is damaged: its sha256 is {have[:16]}…, its .sha256 file says {want[:16]}…")
    try:
        return _verify_members(archive, into)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive} cannot be read as a gzip tar archive: {type(exc).__name__}: {exc}") from None


def _verify_members(archive: Path, into: dict[str, bytes] | None) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isreg() or first.size > MAX_MANIFEST:
            raise ArchiveError(f"{archive} does not start with {MANIFEST}: not a hubrunbook backup archive")
        try:
            manifest = json.loads(tar.extractfile(first).read())
        except ValueError as exc:
            raise ArchiveError(f"{MANIFEST} in {archive} is not valid JSON: {exc}") from None
        _check_manifest(archive, manifest)
        listed = {f["name"]: f for f in manifest["files"]}
        seen: set[str] = set()
        while (info := tar.next()) is not None:
            problem = member_problem(info)
            if problem:
                raise ArchiveError(f"{archive}: {problem}; refused")
            if info.name not in listed:
                raise ArchiveError(f"{archive}: member {info.name!r} is not listed in the manifest; refused")
            if info.name in seen:
                raise ArchiveError(f"{archive}: member {info.name!r} appears twice; refused")
            seen.add(info.name)
            entry = listed[info.name]
            if info.size != entry["size"]:
                raise ArchiveError(f"{archive}: {info.name} has {info.size} bytes, the manifest says {entry['size']}")
            h, kept = hashlib.sha256(), []
            f = tar.extractfile(info)
            while chunk := f.read(CHUNK):
                h.update(chunk)
                if into is not None:
                    kept.append(chunk)
            if h.hexdigest() != entry["sha256"]:
                raise ArchiveError(f"{archive}: {info.name} does not match its sha256 in the manifest")
            if into is not None:
                into[info.name] = b"".join(kept)
        missing = sorted(set(listed) - seen)
        if missing:
            raise ArchiveError(f"{archive}: the manifest lists {', '.join(missing)}, the archive lacks it")
    return manifest


def _check_manifest(archive: Path, manifest) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{archive}: {MANIFEST} is not a format-{FORMAT} hubrunbook manifest")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("size"), int)
            and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64 for f in files):
        raise ArchiveError(f"{archive}: {MANIFEST} has no valid list of files (name, size, sha256)")
    names = [f["name"] for f in files]
    from hubrunbook.backup.notebooks import is_notebook_member

    unknown = sorted(n for n in set(names) - set(KNOWN) if not is_notebook_member(n))
    if unknown or len(set(names)) != len(names):
        raise ArchiveError(f"{archive}: {MANIFEST} lists unknown or repeated members: {unknown or names}")
    for required in KNOWN[:4]:
        if required not in names:
            raise ArchiveError(f"{archive}: {MANIFEST} lacks {required}: not a complete backup")
    if not isinstance(manifest.get("users"), list):
        raise ArchiveError(f"{archive}: {MANIFEST} has no list of users")
