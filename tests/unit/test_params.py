"""The parameter model: every rejection path names the parameter and what is allowed."""
import pytest

from hubrunbook.core.errors import ParameterError
from hubrunbook.core.notebook import collect_parameters, load_params
from hubrunbook.core.params import Params, build_params, check_username, load_params_file


def reject(values, *needles):
    with pytest.raises(ParameterError) as exc:
        build_params(values)
    msg = str(exc.value)
    assert "nothing was changed" in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_defaults_are_valid_and_local():
    p = build_params({})
    assert p.prefix == "/opt/hubrunbook" and p.port == 8000 and p.bind_ip == "127.0.0.1"
    assert p.public_url == "http://127.0.0.1:8000"
    assert p.layout.env_dir.as_posix() == "/opt/hubrunbook/env"
    assert p.config_path.as_posix() == "/opt/hubrunbook/etc/jupyterhub_config.py"


def test_unknown_key_is_an_error_with_a_suggestion():
    reject({"hub_prot": 9000}, "hub_prot", "unknown parameter", "did you mean 'hub_port'")


def test_secret_looking_unknown_key_says_secrets_are_references():
    reject({"github_client_secret": "abc"}, "github_client_secret", "never parameter values")


@pytest.mark.parametrize("key,value,needle", [
    ("port", "8000", "port"),
    ("port", 70000, "between 1 and 65535"),
    ("port", 0, "between 1 and 65535"),
    ("dry_run", "yes", "dry_run"),
    ("users", "demo", "users"),
    ("installer", "conda", "installer"),
    ("proxy_install", "local", "proxy_install"),
    ("bind_ip", "localhost", "bind_ip must be an IP address"),
    ("prefix", "relative/dir", "prefix must be an absolute path"),
    ("prefix", "/opt", "a directory of its own"),
    ("prefix", "/opt/../etc/x", "must not contain '..'"),
    ("python", "python3", "python must be an absolute path"),
    ("notebook_dir", "notebooks", "notebook_dir must be an absolute path"),
    ("notebook_dir", "/home/{user}/nb", "only use the placeholder {username}"),
    ("config_file", "/etc/jupyterhub/config.txt", "must end in .py"),
    ("default_url", "lab", "default_url must be a path on the user's server"),
    ("start_timeout", 0, "start_timeout must be between 1 and 3600"),
    ("min_free_disk_mb", -1, "min_free_disk_mb must be > 0"),
])
def test_bad_values_name_the_parameter(key, value, needle):
    reject({key: value}, key, needle)


def test_float_version_asks_for_quotes():
    reject({"jupyterlab_version": 4.10}, "jupyterlab_version", "quoted string", "'4.1'")


def test_bad_version_string():
    reject({"jupyterhub_version": "latest"}, "jupyterhub_version", "exact version")


@pytest.mark.parametrize("name", ["-rf", "Root", "a b", "x;rm", "9lives", "", "a" * 33, "ünï"])
def test_bad_usernames_rejected(name):
    reject({"users": [name]}, "users")
    with pytest.raises(ValueError):
        check_username(name)


def test_admin_must_be_valid_name():
    reject({"admin_users": ["Admin!"]}, "admin_users", "not a valid system username")


def test_duplicate_user_rejected():
    reject({"users": ["a1", "a1"]}, "users lists a name twice")


def test_ports_must_differ():
    reject({"port": 9000, "hub_port": 9000}, "must differ")


def test_literal_password_rejected():
    reject({"passwords": {"demo": "hunter22"}}, "passwords", "env:VARIABLE", "file:/absolute/path")


def test_secret_references_accepted():
    p = build_params({"users": ["demo", "bob"], "passwords": {"demo": "env:DEMO_PW", "bob": "file:/etc/hubrunbook/bob.pw"}})
    assert p.passwords["bob"] == "file:/etc/hubrunbook/bob.pw"


def test_all_errors_listed_at_once():
    msg = reject({"port": "x", "users": ["Bad"], "nope": 1}, "port", "users", "nope")
    assert msg.count("\n  - ") == 3


def test_yaml_file_loading(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("prefix: /srv/hub\nport: 9000\n")
    assert load_params_file(f).port == 9000
    f.write_text("- a\n- b\n")
    with pytest.raises(ParameterError, match="mapping"):
        load_params_file(f)


def test_notebook_namespace_collection():
    import os

    cells = ["", "port = 9001\nprefix = '/srv/x'"]
    ns = {"port": 9001, "os": os, "In": cells, "Out": {}, "_": 1, "_i1": "x", "run": object(), "prefix": "/srv/x"}
    assert collect_parameters(ns) == {"port": 9001, "prefix": "/srv/x"}
    assert load_params(ns).port == 9001


def test_a_kernel_without_history_takes_every_plain_name():
    """nbval executes cells with store_history=False (In stays ['']): the injected parameters must still count, or
    nbval runs the runbook with the model defaults (prefix /opt/hubrunbook)."""
    ns = {"In": [""], "Out": {}, "prefix": "/srv/nbval", "port": 9003, "run": object()}
    assert collect_parameters(ns) == {"prefix": "/srv/nbval", "port": 9003}
    assert load_params(ns).prefix == "/srv/nbval"


def test_notebook_namespace_with_injected_unknown_key_fails():
    with pytest.raises(ParameterError, match="portt"):
        load_params({"portt": 1})


def test_display_lists_changed_values_only():
    p = build_params({"port": 9002})
    assert "1 differ" in repr(p) and "port = 9002" in repr(p) and "prefix" not in repr(p)
    assert "9002" in p._repr_html_()


def test_model_is_frozen():
    with pytest.raises(Exception):
        Params().port = 1


@pytest.mark.parametrize("values,needle", [  # the security review's accepted-today list (issue 8, low)
    ({"users": ["root"]}, "users entry 'root' is refused"),
    ({"users": ["daemon"]}, "users entry 'daemon' is a system account"),
    ({"allowed_users": ["root"]}, "allowed_users entry 'root'"),
    ({"admin_users": ["bin"]}, "admin_users entry 'bin' is a system account"),
    ({"prefix": "/usr/local"}, "prefix must not lie in the system directory /usr"),
    ({"prefix": "/home/alice"}, "prefix must not lie in the system directory /home"),
    ({"prefix": "/opt/hub\nx"}, "prefix must not contain line breaks"),
    ({"notebook_dir": "/"}, "notebook_dir must be per user"),
    ({"notebook_dir": "/etc"}, "notebook_dir must be per user"),
    ({"notebook_dir": "/etc/{username}"}, "notebook_dir must not lie in the system directory /etc"),
    ({"notebook_dir": "/tmp/shared"}, "notebook_dir must be per user"),
    ({"default_url": "//evil.example/"}, "default_url must be a path on the user's server"),
    ({"default_url": "/\\evil.example"}, "default_url must be a path on the user's server"),
    ({"home_base": "/"}, "home_base must not be '/'"),
    ({"home_base": "/etc"}, "home_base must not lie in the system directory /etc"),
    ({"report_file": "/etc/cron.d/x.json"}, "report_file must not lie in the system directory /etc"),
    ({"start_timeout": 1000000000}, "start_timeout must be between 1 and 3600"),
    ({"passwords": {"demo": "file:/etc/../etc/shadow"}}, "without '..'"),
    ({"passwords": {"stranger": "env:X"}}, "passwords names stranger, not in users or admin_users"),
])
def test_unsafe_values_are_refused_naming_the_parameter(values, needle):
    reject(values, needle)


@pytest.mark.parametrize("values", [  # issue 8, H2: root creates the notebook dir, so only inside the user's home
    {"notebook_dir": "/tmp/{username}/nb"},
    {"notebook_dir": "/home/shared/{username}"},
    {"notebook_dir": "/home/{username}x/nb"},
    {"home_base": "/srv/homes", "notebook_dir": "/home/{username}/notebooks"},
])
def test_notebook_dir_outside_the_home_is_refused(values):
    with pytest.raises(ParameterError, match=r"notebook_dir must be the user's home or inside it: .*\{username\}"):
        build_params(values)


def test_notebook_dir_in_the_home_is_accepted():
    assert build_params({"notebook_dir": "/home/{username}"}).notebook_dir == "/home/{username}"
    assert build_params({"home_base": "/srv/homes/", "notebook_dir": "/srv/homes/{username}/work/nb"})
    with pytest.raises(ParameterError, match="plain path"):
        build_params({"notebook_dir": "/home/{username}//nb"})


def test_no_two_runbook_models_share_a_validator_name():
    """Params inherits every runbook's model: a validator named like one of another model hides it (found when
    UninstallParams' _backup_dir silently replaced BackupParams' own in a merge)."""
    from pydantic._internal._decorators import PydanticDescriptorProxy

    seen: dict[str, list[str]] = {}
    for cls in Params.__mro__[1:]:
        for name, obj in vars(cls).items():
            if isinstance(obj, PydanticDescriptorProxy):
                seen.setdefault(name, []).append(cls.__name__)
    assert {n: c for n, c in seen.items() if len(c) > 1} == {}
