"""JupyterLab for operators: `make lab` (= ``python -m hubrunbook.lab``).

Starts the tool env's JupyterLab as root on 127.0.0.1 only, on the runbooks directory, with:

- a random token that never appears in argv or the kernels' environment: it is written to a 0600 file in a
  private 0700 directory that only this process and the server read (``JUPYTER_TOKEN_FILE``); the URL with the
  token is printed only when stdout is a terminal, otherwise the URL and the token file's path;
- one kernel, ``python3``, that is this interpreter (the tool env's, which imports ``hubrunbook``): its
  kernelspec lives in the private directory, comes first on ``JUPYTER_PATH`` and is the only one allowed, so no
  user's or system's ``python3`` kernelspec can stand in for it;
- a runbook opens with that kernel started, no news or update checks (no internet here), and Ctrl-C stops it
  without questions.

The private directory is removed when the server ends.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from hubrunbook.core.runner import RUNBOOKS_DIR

KERNEL_NAME = "python3"  # the name the runbooks' metadata asks for
START_TIMEOUT = 90
# JupyterLab defaults for runbooks (an operator's own settings still win): open a runbook with its kernel started,
# and no questions about fetching news from the internet (no internet here).
LAB_DEFAULTS = {
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def write_kernelspec(base: Path) -> Path:
    """Write the kernelspec of this interpreter as <base>/kernels/python3; returns its directory."""
    kdir = base / "kernels" / KERNEL_NAME
    kdir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (hubrunbook tool env)", "language": "python",
            "metadata": {"debugger": True}}
    (kdir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kdir


def write_server_config(base: Path, port: int, root_dir: Path) -> Path:
    """Write the server's config file (no secret in it); returns its path."""
    conf = base / "jupyter_lab_config.json"
    conf.write_text(json.dumps({
        "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False, "allow_root": True,
                      "root_dir": str(root_dir), "answer_yes": True},
        "KernelSpecManager": {"ensure_native_kernel": False, "allowed_kernelspecs": [KERNEL_NAME]},
        "KernelManager": {"transport": "ipc"},  # kernel sockets in root's 0700 runtime dir, not on loopback TCP
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "workspaces_dir": str(base / "workspaces"), "app_settings_dir": str(base / "settings")},
    }, indent=1))
    (base / "settings").mkdir()
    (base / "settings" / "overrides.json").write_text(json.dumps(LAB_DEFAULTS, indent=1))
    return conf


def write_token(base: Path) -> tuple[str, Path]:
    """A fresh random token in <base>/token (0600); returns (token, path)."""
    token = secrets.token_urlsafe(32)
    path = base / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token, path


def server_env(base: Path, token_file: Path) -> dict[str, str]:
    """The server's environment: our kernelspec first on JUPYTER_PATH, the token by file, no inherited token."""
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_PATH")}
    env["JUPYTER_PATH"] = str(base)
    env["JUPYTER_TOKEN_FILE"] = str(token_file)
    return env


def wait_ready(proc: subprocess.Popen, url: str, token: str, timeout: float = START_TIMEOUT) -> float:
    """Wait until the server answers /api/status with the token; returns seconds waited. Raises on exit/timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} before answering (see its log above)")
        try:
            if requests.get(f"{url}api/status", headers={"Authorization": f"token {token}"}, timeout=2).ok:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"JupyterLab did not answer on {url} within {timeout} s")


def announce(url: str, port: int, token: str, token_file: Path, seconds: float) -> None:
    """Tell the operator where to go: the URL with the token only on a terminal."""
    print(f"JupyterLab is ready in {seconds:.1f} s (kernel: {sys.executable}); Ctrl-C stops it.")
    if sys.stdout.isatty():
        print(f"Open: {url}lab?token={token}")
        print(f"From your own machine: ssh -L {port}:127.0.0.1:{port} root@<this server>, then open that URL.")
    else:
        print(f"Open: {url}lab (token in {token_file}, readable by root only)")
    sys.stdout.flush()


def run_lab(port: int, root_dir: Path) -> int:
    """Start JupyterLab and wait for it to end; returns its exit code."""
    if os.geteuid() != 0:
        print("hubrunbook.lab: the runbooks change the system and run as root; start this as root", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="hubrunbook-lab-"))  # 0700
    try:
        write_kernelspec(base)
        conf = write_server_config(base, port, root_dir.resolve())
        token, token_file = write_token(base)
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", f"--config={conf}"],
                                env=server_env(base, token_file))
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        url = f"http://127.0.0.1:{port}/"
        try:
            announce(url, port, token, token_file, wait_ready(proc, url, token))
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()
        except RuntimeError as exc:
            print(f"hubrunbook.lab: {exc}", file=sys.stderr)
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hubrunbook.lab", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8888, help="loopback port (default 8888)")
    ap.add_argument("--root-dir", type=Path, default=RUNBOOKS_DIR, help="directory shown (default: runbooks/)")
    args = ap.parse_args(argv)
    return run_lab(args.port, args.root_dir)


if __name__ == "__main__":
    sys.exit(main())
