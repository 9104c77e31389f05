"""kubernetes.ipynb (issue 11): the same parameters as a Zero to JupyterHub values.yaml, validated against the chart's
own schema, with the helm command, the Secrets it references and the migration of the single server's hub database.

``values.py`` generates (pure), ``schema.py`` merges the chart's defaults and validates, ``steps.py`` holds the
runbook's steps (the apply path behind ``k8s_apply``).
"""
