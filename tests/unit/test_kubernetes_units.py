"""kubernetes.ipynb without a cluster: values.yaml from the parameters, validated against the chart's own schema; the
refusals; no secret in the values; the mapping both ways through JupyterHub's config loader; the apply path refused
without helm.

The chart's values.schema.yaml and values.yaml are read from ``$HRB_Z2JH_DIR`` or ``<repo>/../shared/z2jh/``; where
neither holds them (a fresh clone, CI's pristine container) the schema tests are skipped, saying so, and every other
test runs.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params, load_yaml
from hubrunbook.core.steps import CHANGED, SKIPPED, UNCHANGED, WOULD_CHANGE
from hubrunbook.kubernetes import schema as chart_schema
from hubrunbook.kubernetes import steps
from hubrunbook.kubernetes.values import generate, hub_config, mapping_markdown
from support import chartdata

REPO = Path(__file__).resolve().parents[2]
Z2JH = chartdata.Z2JH_DIR
SCHEMA = Z2JH / "values.schema.yaml"


@pytest.fixture(scope="module")
def chart():
    if not chartdata.chart_data_present():
        pytest.skip(f"the Zero to JupyterHub chart data is absent ({Z2JH}: values.schema.yaml, values.yaml; set "
                    "HRB_Z2JH_DIR): schema validation not run")
    return chart_schema.load_chart(SCHEMA)


# a Kubernetes parameter set: GitHub login, no local accounts
BASE = {"k8s_authenticator": "oauth", "users": [], "admin_users": [], "oauth_provider": "github",
        "oauth_public_url": "https://hub.example.org", "oauth_client_id": "env:GITHUB_CLIENT_ID",
        "oauth_client_secret": "env:GITHUB_CLIENT_SECRET", "oauth_allowed_users": ["alice"],
        "k8s_letsencrypt_email": "ops@example.org"}
GENERIC = {**BASE, "oauth_provider": "generic", "oauth_client_id": "env:OAUTH_CLIENT_ID",
           "oauth_client_secret": "env:OAUTH_CLIENT_SECRET", "oidc_issuer": "https://id.example.org/realms/hub",
           "oauth_authorize_url": "https://id.example.org/realms/hub/auth",
           "oauth_token_url": "https://id.example.org/realms/hub/token",
           "oauth_userdata_url": "https://id.example.org/realms/hub/userinfo"}
SETS = {
    "github-users": BASE,
    "github-orgs": {**BASE, "oauth_allowed_users": [], "oauth_allowed_organizations": ["example-org", "example-org:team-a"],
                    "oauth_admin_users": ["octo"]},
    "github-enterprise": {**BASE, "github_url": "https://github.example.com", "oauth_scopes": ["read:user"]},
    "oidc": {**GENERIC, "oauth_scopes": ["openid", "profile", "email"], "oauth_username_claim": "email"},
    "oidc-groups": {**GENERIC, "oauth_allowed_users": [], "oauth_allowed_groups": ["hub-users"],
                    "oauth_admin_groups": ["hub-admins"]},
    "resources": {**BASE, "mem_limit": "512M", "cpu_limit": 0.5, "concurrent_spawn_limit": 20, "spawn_timeout": 300},
    "resources-large": {**BASE, "mem_limit": "4G", "cpu_limit": 2.0},
    "culling-off": {**BASE, "cull_idle_timeout": 0},
    "culling-tight": {**BASE, "cull_idle_timeout": 600, "cull_every": 60, "cull_max_age": 28800},
    "offload-tls": {**BASE, "k8s_letsencrypt_email": "", "tls_terminated_by_proxy": True},
    "storage": {**BASE, "k8s_storage_capacity": "50Gi", "k8s_storage_class": "fast-ssd"},
    "no-storage": {**BASE, "k8s_storage": "none", "notebook_dir": "/home/{username}"},
    "image": {**BASE, "k8s_singleuser_image": "quay.io/jupyter/scipy-notebook:2026-07-01",
              "user_kernels": {"legacy": ["numpy<2"]}, "default_url": "/tree"},
    "port-forward": {**BASE, "oauth_public_url": "http://127.0.0.1:8080", "k8s_letsencrypt_email": ""},
}
# every file in parameters/: None = valid on Kubernetes, else a phrase of the refusal it gets
PARAMETER_FILES = {
    "local.yaml": "k8s_authenticator 'pam': PAM has no Kubernetes equivalent",
    "production.example.yaml": "k8s_authenticator 'pam'",
    "kubernetes-github.yaml": None,
}


def _params(values: dict, **more):
    return build_params({**values, **more})


def _file_values(name: str) -> dict:
    return load_yaml(REPO / "parameters" / name)


def test_every_parameters_file_is_classified():
    assert sorted(p.name for p in (REPO / "parameters").glob("*.yaml")) == sorted(PARAMETER_FILES)


@pytest.mark.parametrize("name", sorted(PARAMETER_FILES))
def test_parameters_files(name, request):
    refusal = PARAMETER_FILES[name]
    params = _params(_file_values(name))
    if refusal is None:
        values = generate(params).values  # generated everywhere; validated where the chart data is
        assert chart_schema.schema_errors(values, request.getfixturevalue("chart")) == []
    else:
        with pytest.raises(ParameterError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            generate(params)


def test_production_example_as_oauth_names_each_local_account_setting():
    """production.example.yaml with OAuth switched on still lists system users and passwords: each is named."""
    with pytest.raises(ParameterError) as err:
        generate(_params(_file_values("production.example.yaml"), k8s_authenticator="oauth"))
    text = str(err.value)
    for name in ("users:", "admin_users:", "passwords:"):
        assert name in text
    assert "oauth_allowed_users" in text and "nothing was written" in text


@pytest.mark.parametrize("name", sorted(SETS))
def test_sets_validate_against_the_chart_schema(name, chart):
    values = generate(_params(SETS[name])).values
    assert chart_schema.schema_errors(values, chart) == []


def test_schema_validation_is_live(chart):
    """A broken value is caught by the chart's schema (the check is not vacuous)."""
    values = generate(_params(BASE)).values
    values["cull"]["timeout"] = "an hour"
    values["singleuser"]["storage"]["type"] = "nfs"
    values["hub"]["unknownKey"] = 1
    errors = chart_schema.schema_errors(values, chart)
    assert any(e.startswith("cull.timeout:") for e in errors)
    assert any(e.startswith("singleuser.storage.type:") for e in errors)
    assert any(e.startswith("hub:") and "unknownKey" in e for e in errors)


def test_merge_is_helms():
    base = {"hub": {"db": {"type": "sqlite-pvc", "pvc": {"storage": "1Gi"}}, "baseUrl": "/"}, "list": [1, 2]}
    over = {"hub": {"db": {"type": "postgres"}}, "list": [3]}
    assert chart_schema.merge(base, over) == {"hub": {"db": {"type": "postgres", "pvc": {"storage": "1Gi"}}, "baseUrl": "/"},
                                              "list": [3]}
    assert base["hub"]["db"]["type"] == "sqlite-pvc"  # a copy


# --- what the values say ---------------------------------------------------------------------------------------------
def test_github_values():
    v = generate(_params(SETS["github-orgs"])).values
    cfg = v["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] == "oauthenticator.github.GitHubOAuthenticator"
    assert cfg["GitHubOAuthenticator"]["allowed_organizations"] == ["example-org", "example-org:team-a"]
    assert cfg["OAuthenticator"]["admin_users"] == ["octo"]
    assert "read:org" in cfg["OAuthenticator"]["scope"]
    assert cfg["OAuthenticator"]["oauth_callback_url"] == "https://hub.example.org/hub/oauth_callback"
    assert not any(k.startswith("Local") for k in cfg)
    assert all("create_system_users" not in c and "add_user_cmd" not in c for c in cfg.values())
    env = v["hub"]["extraEnv"]
    assert env["GITHUB_CLIENT_SECRET"] == {"valueFrom": {"secretKeyRef": {"name": "jupyterhub-oauth", "key": "client_secret"}}}
    assert v["proxy"]["https"] == {"enabled": True, "type": "letsencrypt", "hosts": ["hub.example.org"],
                                   "letsencrypt": {"contactEmail": "ops@example.org"}}


def test_oidc_values():
    v = generate(_params(SETS["oidc-groups"])).values
    cfg = v["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] == "oauthenticator.generic.GenericOAuthenticator"
    assert cfg["OAuthenticator"]["allowed_groups"] == ["hub-users"]
    assert cfg["OAuthenticator"]["admin_groups"] == ["hub-admins"]
    assert cfg["OAuthenticator"]["manage_groups"] is True
    assert cfg["OAuthenticator"]["token_url"] == "https://id.example.org/realms/hub/token"
    assert set(v["hub"]["extraEnv"]) == {"OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"}


def test_resources_culling_storage_values():
    small = generate(_params(SETS["resources"])).values
    assert small["singleuser"]["memory"] == {"limit": "512M", "guarantee": "512M"}  # a guarantee above it is refused by k8s
    assert small["singleuser"]["cpu"] == {"limit": 0.5}
    assert small["hub"]["concurrentSpawnLimit"] == 20 and small["singleuser"]["startTimeout"] == 300
    large = generate(_params(SETS["resources-large"])).values
    assert large["singleuser"]["memory"] == {"limit": "4G"}  # the chart's guarantee (1G) applies
    assert generate(_params(SETS["culling-off"])).values["cull"] == {"enabled": False}
    assert generate(_params(SETS["culling-tight"])).values["cull"] == {"enabled": True, "timeout": 600, "every": 60,
                                                                       "maxAge": 28800}
    default = generate(_params(BASE))
    assert "memory" not in default.values["singleuser"]  # mem_limit 'auto': no pod form …
    assert any(r[0] == "mem_limit" and "'auto'" in r[2] for r in default.rows)  # … said in the plan, not dropped
    storage = generate(_params(SETS["storage"])).values["singleuser"]["storage"]
    assert storage == {"type": "dynamic", "homeMountPath": "/home/jovyan", "capacity": "50Gi",
                       "dynamic": {"storageClass": "fast-ssd"}}
    assert default.values["hub"]["config"]["KubeSpawner"] == {"notebook_dir": "/home/jovyan/notebooks"}
    assert "KubeSpawner" not in generate(_params(SETS["no-storage"])).values["hub"]["config"]
    image = generate(_params(SETS["image"])).values["singleuser"]
    assert image["image"] == {"name": "quay.io/jupyter/scipy-notebook", "tag": "2026-07-01"}
    assert generate(_params(SETS["offload-tls"])).values["proxy"]["https"] == {"enabled": True, "type": "offload"}
    assert generate(_params(SETS["port-forward"])).values["proxy"]["https"] == {"enabled": False}


# --- refusals ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, phrase", [
    ({"k8s_authenticator": "ldap"}, "k8s_authenticator 'ldap' is not known"),
    ({**BASE, "mem_limit": "-1G"}, "mem_limit must be 'auto'"),
    ({**BASE, "cpu_limit": -1.0}, "cpu_limit must be 0"),
    ({**BASE, "k8s_storage_capacity": "-5Gi"}, "k8s_storage_capacity must be a positive"),
    ({**BASE, "k8s_namespace": "Jupyter_Hub"}, "k8s_namespace must be a Kubernetes name"),
    ({**BASE, "k8s_singleuser_image": "jupyter/scipy-notebook:latest"}, "tag 'latest' is refused"),
    ({**BASE, "k8s_chart_version": 4.3}, "k8s_chart_version must be a quoted string"),
])
def test_wrong_parameters_refused_before_anything(values, phrase):
    with pytest.raises(ParameterError, match=phrase):
        build_params(values)


@pytest.mark.parametrize("more, phrase", [
    ({"k8s_authenticator": "pam"}, "PAM has no Kubernetes equivalent .*: set k8s_authenticator: 'oauth'"),
    ({"passwords": {"alice": "env:P"}, "users": ["alice"]}, "passwords: local system accounts"),
    ({"allowed_users": ["bob"]}, "allowed_users: local system accounts .* oauth_allowed_users"),
    ({"allow_all": True}, "allow_all: local system accounts"),
    ({"home_base": "/srv/homes", "notebook_dir": "/srv/homes/{username}"}, "home_base: .*/home/jovyan"),
    ({"user_kernels": {"legacy": ["numpy<2"]}}, "user_kernels: .* k8s_singleuser_image"),
    ({"k8s_letsencrypt_email": ""}, "nothing serves its certificate: set k8s_letsencrypt_email"),
    ({"oauth_public_url": ""}, "oauth_public_url is empty"),
    ({"oauth_allowed_users": []}, "nobody could log in"),
    ({**GENERIC, "oauth_token_url": ""}, "token_url are unknown: set oauth_token_url"),
])
def test_settings_without_kubernetes_form_refused(more, phrase):
    with pytest.raises(ParameterError, match=phrase) as err:
        generate(_params(BASE, **more))
    assert "nothing was written" in str(err.value)


def test_plan_step_refuses_the_default_parameters():
    with pytest.raises(ParameterError, match="PAM has no Kubernetes equivalent"):
        steps.check_kubernetes_plan(build_params({}))


# --- secrets --------------------------------------------------------------------------------------------------------
SECRET_ID, SECRET_VALUE = "Iv1.hrbk8sclientid42", "hrb-k8s-client-secret-5f0d9c1e2b"


@pytest.fixture
def secret_params(tmp_path):
    files = {}
    for name, value in (("id", SECRET_ID), ("secret", SECRET_VALUE)):
        path = tmp_path / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(value)
        path.chmod(0o600)
        files[name] = path
    return _params(BASE, prefix=str(tmp_path / "prefix"), oauth_client_id=f"file:{files['id']}",
                   oauth_client_secret=f"file:{files['secret']}")


def test_no_secret_in_values_or_commands(secret_params):
    assert steps.ensure_kubernetes_values(secret_params).status == CHANGED
    text = secret_params.k8s_values_file.read_text()
    commands = str(steps.show_kubernetes_commands(secret_params))
    for secret in (SECRET_ID, SECRET_VALUE):
        assert secret not in text and secret not in commands
    assert f"--from-file=client_secret={secret_params.oauth_client_secret.removeprefix('file:')}" in commands
    assert oct(secret_params.k8s_values_file.stat().st_mode & 0o777) == "0o644"


def test_env_secret_never_in_argv():
    """An env: reference becomes bash process substitution: the value never appears in a command line."""
    commands = generate(_params(BASE)).secret_commands
    assert '--from-file=client_secret=<(printf %s "$GITHUB_CLIENT_SECRET")' in commands[0]


# --- the values file ------------------------------------------------------------------------------------------------
def test_values_file_idempotent_dry_run_and_backup(tmp_path):
    params = _params(BASE, prefix=str(tmp_path / "p"))
    assert steps.ensure_kubernetes_values(params, dry_run=True).status == WOULD_CHANGE
    assert not params.k8s_values_file.exists()
    assert steps.ensure_kubernetes_values(params).status == CHANGED
    assert params.k8s_values_file == tmp_path / "p" / "kubernetes" / "values.yaml"
    assert steps.ensure_kubernetes_values(params).status == UNCHANGED
    changed = _params(BASE, prefix=str(tmp_path / "p"), cpu_limit=2.0)
    result = steps.ensure_kubernetes_values(changed)
    assert result.status == CHANGED and "previous kept as values.yaml.bak-" in result.detail
    assert yaml.safe_load(changed.k8s_values_file.read_text())["singleuser"]["cpu"] == {"limit": 2.0}
    other = _params(BASE, prefix=str(tmp_path / "p"), k8s_values_path=str(tmp_path / "elsewhere" / "hub.yaml"))
    assert steps.ensure_kubernetes_values(other).status == CHANGED and (tmp_path / "elsewhere" / "hub.yaml").is_file()


def test_schema_step_skips_with_reason_without_schema_path():
    result = steps.check_kubernetes_schema(_params(BASE))
    assert result.status == SKIPPED and "k8s_schema_path is empty" in result.detail


def test_schema_step_names_a_missing_chart_file(tmp_path):
    with pytest.raises(ParameterError, match="k8s_schema_path: .* does not exist"):
        steps.check_kubernetes_schema(_params(BASE, k8s_schema_path=str(tmp_path / "values.schema.yaml")))


# --- apply ----------------------------------------------------------------------------------------------------------
def test_apply_is_a_dry_run_by_default():
    result = steps.ensure_kubernetes_applied(_params(BASE))
    assert result.status == SKIPPED and "k8s_apply: false" in result.detail


def test_apply_refused_without_helm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no helm, no kubectl
    with pytest.raises(PreflightError, match="k8s_apply: true needs helm and kubectl on PATH"):
        steps.ensure_kubernetes_applied(_params(BASE, k8s_apply=True, k8s_schema_path=str(SCHEMA)))


# --- the mapping, documented and tested both ways ---------------------------------------------------------------------
@pytest.mark.parametrize("doc", ["README.md", "runbooks/kubernetes.md"])
def test_mapping_table_in_docs(doc):
    assert mapping_markdown() in (REPO / doc).read_text(), f"{doc}: paste hubrunbook.kubernetes.values.mapping_markdown()"


AUTH_TRAITS = ("authenticator_class", "allowed_users", "admin_users", "allow_all", "allow_existing_users",
               "oauth_callback_url", "login_service", "scope", "enable_pkce", "username_pattern", "authorize_url",
               "token_url", "userdata_url", "github_url", "allowed_organizations", "username_claim", "manage_groups",
               "auth_state_groups_key", "allowed_groups", "admin_groups")


@pytest.fixture
def loader_params(tmp_path):
    """A prefix whose 'hub env' python runs this test venv's interpreter (traitlets is in it): configload runs its
    loader there. A wrapper, not a symlink: a symlinked venv python outside its venv is the bare base interpreter
    (on a pristine server without traitlets)."""
    pytest.importorskip("traitlets")
    env_bin = tmp_path / "prefix" / "env" / "bin"
    env_bin.mkdir(parents=True)
    wrapper = env_bin / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("name", ["github-orgs", "github-enterprise", "oidc", "oidc-groups"])
def test_same_authenticator_settings_both_ways(loader_params, name):
    """oauth.ipynb's jupyterhub_config.py lines and hub.config (as a traitlets Config, as the chart loads it), each
    read with JupyterHub's config loader: the same effective authenticator settings."""
    from hubrunbook.hub.configload import load_config
    from hubrunbook.oauth.settings import oauth_settings

    params = _params(SETS[name], prefix=str(loader_params / "prefix"))
    single = loader_params / "single" / "jupyterhub_config.py"
    single.parent.mkdir()
    single.write_text("".join(f"{k} = {v}\n" for k, v in oauth_settings(params).items() if v is not None))
    k8s = loader_params / "k8s" / "jupyterhub_config.py"
    k8s.parent.mkdir()
    k8s.write_text("import json\nfrom traitlets.config import Config\n"
                   f"c.merge(Config(json.loads({json.dumps(json.dumps(hub_config(params)))})))\n")
    keys = [f"c.Authenticator.{t}" for t in AUTH_TRAITS if t != "authenticator_class"]
    a = load_config(params, keys, path=single, resolve=True).values
    b = load_config(params, keys, path=k8s, resolve=True).values
    assert a == b
    for trait in ("allowed_users", "admin_users", "oauth_callback_url", "scope", "username_claim", "allow_all"):
        assert f"c.Authenticator.{trait}" in a  # the comparison covers what decides who logs in
    if params.oauth_provider == "github":
        assert "c.Authenticator.allowed_organizations" in a and "c.Authenticator.github_url" in a
    elif params.oauth_allowed_groups:
        assert a["c.Authenticator.allowed_groups"] == ["hub-users"]


def test_both_ways_notices_a_difference(loader_params):
    """The comparison is not vacuous: a hub.config that drops an organization differs."""
    from hubrunbook.hub.configload import load_config
    from hubrunbook.oauth.settings import oauth_settings

    params = _params(SETS["github-orgs"], prefix=str(loader_params / "prefix"))
    cfg = hub_config(params)
    cfg["GitHubOAuthenticator"]["allowed_organizations"] = ["example-org"]
    single, k8s = loader_params / "a.py", loader_params / "b.py"
    single.write_text("".join(f"{k} = {v}\n" for k, v in oauth_settings(params).items() if v is not None))
    k8s.write_text(f"import json\nfrom traitlets.config import Config\nc.merge(Config(json.loads({json.dumps(json.dumps(cfg))})))\n")
    key = ["c.Authenticator.allowed_organizations"]
    assert load_config(params, key, path=single, resolve=True).values != load_config(params, key, path=k8s, resolve=True).values


def test_uninstall_removes_the_values_dir_with_config():
    from hubrunbook.uninstall.plan import dir_parts

    params = _params(BASE)
    assert params.layout.k8s_values.parent.name == "kubernetes" and dir_parts(params)["kubernetes"] == "config"
