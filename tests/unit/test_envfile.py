"""hub.env: the one reader follows systemd's EnvironmentFile rules, and the writer's output reads back unchanged."""
import stat

import pytest

from hubrunbook.core import secretref
from hubrunbook.core.errors import HubError
from hubrunbook.core.params import build_params
from hubrunbook.hub.envfile import format_env_text, parse_env_text, read_hub_env, set_hub_env


def test_systemd_rules():
    text = (
        "# comment\n"
        "  ; also a comment\n"
        "\n"
        "PLAIN=abc  \n"                       # trailing blanks dropped
        "  SPACED  =   value with blanks\n"   # blanks around the key and before the value dropped
        "SQ='a \"b\" $c \\d'\n"               # single quotes: literal
        'DQ="x \\"y\\" \\$z \\d"\n'           # double quotes: \" \$ unescaped, \d kept
        "ESC=a\\ b\\\\c\n"                    # unquoted backslash takes the next character
        "JOINED=one\\\ntwo\n"                 # backslash-newline continues the value
        "PARTS='a' \"b\"\n"                   # quoted parts follow each other
        "LIT=it's\n"                          # a quote inside an unquoted part is literal
        "EMPTY=\n"
        "export NOPE=1\n"                     # not a variable name: systemd ignores it
        "no equals sign\n"
        "PLAIN=later\n"                       # later lines win
    )
    assert parse_env_text(text) == {
        "PLAIN": "later", "SPACED": "value with blanks", "SQ": 'a "b" $c \\d', "DQ": 'x "y" $z \\d',
        "ESC": "a b\\c", "JOINED": "onetwo", "PARTS": "ab", "LIT": "it's", "EMPTY": "",
    }


@pytest.mark.parametrize("value", ["0123abcdef", "Iv1.abc-DEF_123", "a b", "it's", 'q"uo\\te', "$HOME`x`", "  lead", "trail ", "#x", ""])
def test_written_values_read_back_unchanged(value):
    text = format_env_text({"VAR": value, "TOKEN": "00ff"})
    assert parse_env_text(text) == {"VAR": value, "TOKEN": "00ff"}


def test_plain_values_are_written_bare():
    assert format_env_text({"B": "2", "A": "x-y.z"}).splitlines()[1:] == ["A=x-y.z", "B=2"]


def test_writer_refuses_what_systemd_would_read_differently():
    with pytest.raises(HubError, match="line break"):
        format_env_text({"A": "x\ny"})
    with pytest.raises(HubError, match="not a valid environment variable name"):
        format_env_text({"export A": "x"})


def test_set_hub_env_writes_private_file_and_masks(tmp_path):
    params = build_params({"prefix": str(tmp_path / "hrb")})
    assert read_hub_env(params) == {}
    assert set_hub_env(params, {"GITHUB_CLIENT_SECRET": "s3cr3t value", "T": "abcd"}) is True
    path = params.layout.hub_env
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_hub_env(params) == {"GITHUB_CLIENT_SECRET": "s3cr3t value", "T": "abcd"}
    assert "s3cr3t value" not in secretref.mask("leak: s3cr3t value")
    assert set_hub_env(params, {"T": "abcd"}) is False
    assert set_hub_env(params, {"T": None}) is True and read_hub_env(params) == {"GITHUB_CLIENT_SECRET": "s3cr3t value"}


def test_unreadable_hub_env_says_what_to_do(tmp_path):
    params = build_params({"prefix": str(tmp_path / "hrb")})
    params.layout.hub_env.mkdir(parents=True)  # a directory where the file belongs
    with pytest.raises(HubError, match="root-owned 0600 file"):
        read_hub_env(params)
