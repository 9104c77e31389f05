#!/bin/sh
# The tool virtualenv (.venv) for `make deploy` and `make test`, on a fresh server.
# Installs what Debian leaves out of a minimal python3 (python3-venv: ensurepip) before creating it.
set -eu
PY=${1:-python3}
VENV=${2:-.venv}
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "bootstrap: $PY not found. Install Python 3.10 or newer (Debian: apt-get install python3) and run this again." >&2
    exit 1
fi
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "bootstrap: $("$PY" --version 2>&1) is too old; JupyterHub 6 needs Python 3.10 or newer" >&2; exit 1; }
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: $PY cannot create virtualenvs (no ensurepip). On Debian/Ubuntu, as root: apt-get install python3-venv" >&2
        exit 1
    fi
    pkg="python3-venv"
    echo "bootstrap: installing $pkg (Debian's python3 has no ensurepip without it)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$pkg" >/dev/null; }
fi
# a venv left without pip by an earlier failed attempt is recreated
"$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$PY" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
