"""The user env (userenv.ipynb): its parameters, reading requirements files and conda environment.yml, the plan,
lock parsing and diffs, the import check's code, and the troubleshoot check of a deployment without a user env."""
import json
import os
import subprocess
import sys

import pytest

from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import build_params
from hubrunbook.core.steps import OK
from hubrunbook.hub.config import hub_settings
from hubrunbook.userenv import build, verify
from hubrunbook.userenv.requirements import environment_yml, requirements_file, requirements_txt


def reject(values, *needles):
    with pytest.raises(ParameterError) as exc:
        build_params(values)
    for n in needles:
        assert n in str(exc.value), str(exc.value)


# --- parameters ----------------------------------------------------------------------------------------------
def test_defaults_hold_a_small_scientific_set_and_the_hubs_versions():
    p = build_params({"prefix": "/srv/h"})
    assert p.user_packages == ["numpy", "pandas", "matplotlib"] and p.user_kernels == {} and p.user_python == "auto"
    assert build.wanted_requirements(p)[:3] == ["jupyterhub==6.1.1", "jupyterlab==4.6.6", "ipykernel"]
    assert p.layout.userenv_dir.as_posix() == "/srv/h/userenv"
    assert p.layout.user_python_dir.as_posix() == "/srv/h/python"  # never root's home: every user runs it
    assert p.layout.userenv_kernelspecs_dir.as_posix() == "/srv/h/userenv/share/jupyter/kernels"
    assert hub_settings(build_params({"prefix": "/srv/h", "users": ["u1"]}))["c.Spawner.cmd"] == \
        "['/srv/h/userenv/bin/jupyterhub-singleuser']"


@pytest.mark.parametrize("bad, needle", [
    ("git+https://github.com/x/y", "not a valid requirement"),
    ("pkg @ https://example.org/pkg.whl", "direct URLs are refused"),
    ("-e .", "options and control characters are refused"),
    ("--index-url=http://evil", "options and control characters are refused"),
    ("numpy\nrequests", "control characters"),
    ("", "non-empty requirement"),
])
def test_a_package_that_is_not_a_plain_requirement_is_refused(bad, needle):
    reject({"user_packages": [bad]}, "user_packages", needle)


def test_packages_given_twice_or_managed_by_the_runbook_are_refused():
    reject({"user_packages": ["numpy", "NumPy>=1"]}, "names numpy twice")
    reject({"user_packages": ["jupyterhub==5.0"]}, "must not list jupyterhub", "hub's version")


@pytest.mark.parametrize("name", ["python3", "Python-X", "a b", "../up", "x" * 65])
def test_kernel_names_users_could_confuse_or_paths_are_refused(name):
    reject({"user_kernels": {name: ["six"]}}, "user_kernels name")


def test_kernel_packages_are_checked_like_user_packages():
    reject({"user_kernels": {"legacy": ["six", "-r other.txt"]}}, "user_kernels['legacy'] entry")
    assert build_params({"user_kernels": {"legacy": ["six<2"]}}).user_kernels == {"legacy": ["six<2"]}


@pytest.mark.parametrize("value, ok", [("auto", True), ("3.12", True), ("3.11.9", True), ("/usr/bin/python3", True),
                                       ("3", False), ("latest", False), ("python3.12", False), ("usr/bin/python", False)])
def test_user_python_is_auto_a_version_or_a_path(value, ok):
    if ok:
        assert build_params({"user_python": value}).user_python == value
    else:
        reject({"user_python": value}, "user_python")


def test_user_requirements_is_an_absolute_requirements_or_environment_file():
    reject({"user_requirements": "requirements.txt"}, "user_requirements", "absolute")
    reject({"user_requirements": "/srv/env.json"}, "user_requirements must be a requirements file")
    assert build_params({"user_requirements": "/srv/environment.yml"}).user_requirements == "/srv/environment.yml"


# --- requirements files ----------------------------------------------------------------------------------------
def test_requirements_txt_keeps_requirements_and_refuses_options():
    assert requirements_txt("# tools\nnumpy>=1.26  # arrays\n\nscipy\n") == ["numpy>=1.26", "scipy"]
    with pytest.raises(ParameterError, match="line 2"):
        requirements_txt("numpy\n-r more.txt\n", "/srv/req.txt")


def test_environment_yml_gives_its_pypi_installable_dependencies():
    reqs, notes = environment_yml("""
name: science
channels: [conda-forge, defaults]
dependencies:
  - python=3.11
  - numpy=1.26
  - scipy>=1.10
  - pandas 2.2.*
  - pip
  - pip:
    - requests>=2
""")
    assert reqs == ["numpy==1.26.*", "scipy>=1.10", "pandas==2.2.*", "requests>=2"]
    assert any(n.startswith("python=3.11: skipped") for n in notes) and "numpy=1.26 → numpy==1.26.*" in notes


def test_environment_yml_refuses_what_only_conda_installs_naming_each():
    with pytest.raises(ParameterError) as exc:
        environment_yml("""
channels: [bioconda, conda-forge]
dependencies:
  - r-base=4.3
  - conda-forge::numpy
  - samtools=1.9=h1234
  - cudatoolkit
  - pip:
    - https://example.org/x.whl
""", "/srv/environment.yml")
    msg = str(exc.value)
    for needle in ("channels bioconda", "'r-base=4.3' is R", "'conda-forge::numpy' names a conda channel",
                   "'samtools=1.9=h1234' pins a conda build string", "'cudatoolkit' is CUDA", "nothing was changed"):
        assert needle in msg, msg


def test_environment_yml_that_is_not_one_is_refused():
    with pytest.raises(ParameterError, match="not valid YAML"):
        environment_yml("dependencies: [a, b\n")
    with pytest.raises(ParameterError, match="'dependencies:' list"):
        environment_yml("dependencies: numpy\n")


def test_a_requirements_file_others_can_change_is_refused(tmp_path_factory):
    d = tmp_path_factory.mktemp("req")
    os.chmod(d, 0o755)
    f = d / "requirements.txt"
    f.write_text("six\n")
    os.chmod(f, 0o666)
    with pytest.raises(ParameterError, match="writable by others"):
        requirements_file(str(f))


def test_a_requirements_file_adds_to_user_packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("req2")
    os.chmod(d, 0o755)
    f = d / "environment.yml"
    f.write_text("dependencies:\n  - six=1.17\n")
    os.chmod(f, 0o644)
    from hubrunbook.host.system import untrusted_reason

    if untrusted_reason(f):
        pytest.skip(f"{f} lies under a directory root must not trust here (the runbook would refuse it too)")
    p = build_params({"user_packages": ["numpy"], "user_requirements": str(f)})
    assert build.user_requirements(p) == (["numpy", "six==1.17.*"], ["six=1.17 → six==1.17.*"])
    assert build.listed_packages(p) == ["numpy", "six"]


# --- the plan, locks, diffs ----------------------------------------------------------------------------------
def test_plan_lists_each_source_and_the_python():
    p = build_params({"user_packages": ["numpy"], "user_kernels": {"legacy": ["six"]}})
    res = build.check_user_env_plan(p)
    assert res.status == OK and "1 user package(s)" in res.detail and "1 extra kernel(s)" in res.detail, res
    rows = {r[0]: r for r in res.rows}
    assert rows["jupyterhub (for jupyterhub-singleuser)"][2].startswith("==6.1.1")
    assert rows["numpy"][1] == "user_packages" and rows["kernel legacy"][2] == "ipykernel, six"


def test_lock_parsing_and_the_exact_difference():
    lock = "numpy==2.1.0\nPandas==2.2.3 ; python_version >= '3.10'\n# a comment\n-e ./local\nsix==1.17.0\n"
    have = build.parse_lock(lock)
    assert have == {"numpy": "2.1.0", "pandas": "2.2.3", "six": "1.17.0"}
    want = {"numpy": "2.1.0", "pandas": "2.2.4", "requests": "2.32.0"}
    assert build.diff_sets(have, want) == ["pandas 2.2.3 → 2.2.4", "+requests 2.32.0", "-six 1.17.0"]
    assert build.diff_sets(want, want) == []


# --- the import check ------------------------------------------------------------------------------------------
def test_the_import_code_imports_each_distributions_modules_and_reports_errors():
    code = verify.import_code(["packaging", "pyyaml", "no-such-dist-hrb"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    res = verify.parse_imports(out)
    assert res["packaging"] == "ok: import packaging"
    assert res["pyyaml"].startswith("ok: import") and "yaml" in res["pyyaml"]  # the import name is not the dist name
    assert res["no-such-dist-hrb"] == "not installed"


def test_kernels_to_check_are_the_default_one_and_each_extra():
    p = build_params({"user_packages": ["NumPy>=2"], "user_kernels": {"legacy": ["Six"]}})
    assert verify.kernels_to_check(p) == {"python3": ["numpy"], "legacy": ["six"]}
    assert verify.kernels_to_check(build_params({"user_packages": []}))["python3"] == ["ipykernel"]


def test_no_user_env_on_an_old_deployment_is_a_warning_naming_the_runbooks(tmp_path):
    from hubrunbook.troubleshoot.catalog import CATALOG, WARNING, Context
    from hubrunbook.troubleshoot.checks import install

    assert {"user-env", "user-packages"} <= {c.id for c in CATALOG}
    ctx = Context(build_params({"prefix": str(tmp_path / "p")}))
    ctx.fact("config", lambda: (None, "no config"))
    (found,) = install.check_user_env(ctx)
    assert found.id == "user-env-absent" and found.severity == WARNING and "userenv.ipynb" in found.fix
    assert install.check_user_packages(ctx) == []  # nothing to import without an env: the env finding says why
