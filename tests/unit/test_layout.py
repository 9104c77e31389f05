"""Every path under the prefix is named once, by core/layout.py."""
import ast
from pathlib import Path

from hubrunbook.core.layout import Layout
from hubrunbook.core.params import build_params

LIB = Path(__file__).resolve().parents[2] / "lib" / "hubrunbook"
OWN_DIRS = ("layout.root", "layout.state_dir", "layout.secrets_dir", "layout.passwords_dir", "layout.backups_dir")


def test_paths_under_the_prefix():
    params = build_params({"prefix": "/srv/hrb"})
    lay = params.layout
    assert lay == Layout("/srv/hrb")
    assert str(params.config_path) == str(lay.default_config_path) == "/srv/hrb/etc/jupyterhub_config.py"
    assert str(lay.hub_env) == "/srv/hrb/secrets/hub.env" and str(lay.password_file("ann")) == "/srv/hrb/secrets/passwords/ann"
    assert str(lay.hub_db) == "/srv/hrb/state/jupyterhub.sqlite" and str(lay.env_bin("python")) == "/srv/hrb/env/bin/python"


def test_config_file_replaces_only_the_config_path():
    params = build_params({"prefix": "/srv/hrb", "config_file": "/srv/conf/hub.py"})
    assert str(params.config_path) == "/srv/conf/hub.py" and str(params.layout.state_dir) == "/srv/hrb/state"


def test_no_module_joins_a_prefix_path_by_hand():
    """``<x>.layout.{root,state_dir,secrets_dir} / "<literal>"`` outside layout.py is a prefix file name typed by hand
    (inside env/, proxy/ and nodejs/ the layout is the venv's or npm's own, not ours)."""
    found = []
    for path in LIB.rglob("*.py"):
        if path.name == "layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant)
                    and isinstance(node.right.value, str) and ast.unparse(node.left).endswith(OWN_DIRS)):
                found.append(f"{path.relative_to(LIB)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_every_public_layout_name_without_arguments_is_a_property():
    """A merge once left restore_marker a plain method (``layout.restore_marker.read_text()`` failed at run time)."""
    import inspect

    for name, attr in vars(Layout).items():
        if name.startswith("_") or isinstance(attr, property):
            continue
        if isinstance(attr, staticmethod):
            assert inspect.signature(attr).parameters, f"Layout.{name} takes no argument: make it a constant"
        elif callable(attr):
            assert len(inspect.signature(attr).parameters) > 1, f"Layout.{name} takes no argument: make it a property"
