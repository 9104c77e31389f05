"""Secret references, masking and private files."""
import os
import stat

import pytest

from hubrunbook.core import secretref
from hubrunbook.core.errors import CommandError, SecretError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import StepResult


def test_env_reference(monkeypatch):
    monkeypatch.setenv("HRB_TEST_SECRET", "s3cr3t-value-1")
    assert secretref.resolve("env:HRB_TEST_SECRET", "x") == "s3cr3t-value-1"
    assert secretref.mask("token=s3cr3t-value-1;") == "token=********;"


def test_env_missing(monkeypatch):
    monkeypatch.delenv("HRB_NOPE", raising=False)
    with pytest.raises(SecretError, match="HRB_NOPE is not set"):
        secretref.resolve("env:HRB_NOPE", "oauth_client_secret")


def test_file_reference_private(tmp_path):
    f = tmp_path / "pw"
    secretref.write_private(f, "file-secret-2\n")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert secretref.resolve(f"file:{f}", "x") == "file-secret-2"


def test_file_reference_world_readable_refused(tmp_path):
    f = tmp_path / "pw"
    f.write_text("abcdef")
    os.chmod(f, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        secretref.resolve(f"file:{f}", "passwords['demo']")


def test_file_missing_and_empty(tmp_path):
    with pytest.raises(SecretError, match="does not exist"):
        secretref.resolve(f"file:{tmp_path}/none", "x")
    f = tmp_path / "empty"
    secretref.write_private(f, "")
    with pytest.raises(SecretError, match="empty"):
        secretref.resolve(f"file:{f}", "x")


def test_headless_empty_reference_fails_clearly(monkeypatch):
    import getpass

    def no_stdin(prompt=""):
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", no_stdin)
    with pytest.raises(SecretError, match="cannot prompt"):
        secretref.resolve("", "oauth_client_secret")


def test_validate_ref_rejects_literals():
    for bad in ("hunter2", "env:", "file:relative", "env:1BAD"):
        with pytest.raises(ValueError, match="env:VARIABLE"):
            secretref.validate_ref(bad, "x")
    assert secretref.validate_ref("", "x") == ""


def test_secrets_masked_in_results_and_command_errors():
    secretref.register("very-secret-output")
    r = StepResult("s", "ok", "saw very-secret-output", rows=[("a", "very-secret-output")])
    assert "very-secret-output" not in repr(r) and "very-secret-output" not in r._repr_html_()
    with pytest.raises(CommandError) as exc:
        run_command(["sh", "-c", "echo very-secret-output; exit 3"], what="leaky")
    assert "very-secret-output" not in str(exc.value) and "exit code 3" in str(exc.value)


def test_secret_file_owned_by_another_user_is_refused(tmp_path):
    """A user who owns the secret file could swap the secret under the hub: refused, naming the owner and the fix."""
    f = tmp_path / "client_secret"
    secretref.write_private(f, "planted-by-a-user")
    os.chown(f, 65534, 65534)
    with pytest.raises(SecretError, match=r"owned by uid 65534.*chown"):
        secretref.resolve(f"file:{f}", "oauth_client_secret")
    assert secretref.mask("planted-by-a-user") == "planted-by-a-user"  # never read, so never registered either


def test_secret_file_symlink_is_not_followed(tmp_path):
    """A symlink planted where the secret file should be (pointing at a root-only file) is refused, never read."""
    target = tmp_path / "shadow-like"
    secretref.write_private(target, "root-only-content")
    link = tmp_path / "secret"
    link.symlink_to(target)
    with pytest.raises(SecretError, match="is a symlink"):
        secretref.resolve(f"file:{link}", "passwords['demo']")
    with pytest.raises(SecretError, match="is a symlink"):
        secretref.check_file_private(link, "x")
