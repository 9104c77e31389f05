"""The hub's virtualenv: built from an interpreter every user can run, packages pinned."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.shell import run_command, stream_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.host.system import find_hub_python, make_world_readable


def hub_python(params) -> Path:
    """Path of the chosen base interpreter (raises PreflightError if none fits)."""
    py, why = find_hub_python(params.python)
    if py is None:
        raise PreflightError(
            f"no Python ≥ 3.10 that every user can run was found ({why}). Fix: install python3 from the "
            "distribution (apt-get install python3 python3-venv) or set python: to such an interpreter"
        )
    return py


def uv_binary() -> Path | None:
    """uv next to this interpreter (the tool env) or on PATH."""
    local = Path(sys.executable).parent / "uv"
    if local.exists():
        return local
    found = shutil.which("uv")
    return Path(found) if found else None


def installer(params) -> str:
    if params.installer == "uv" and uv_binary() is None:
        raise PreflightError("installer: 'uv' was asked for but uv is not installed; set installer: 'auto' or 'pip'")
    if params.installer == "auto":
        return "uv" if uv_binary() else "pip"
    return params.installer


def create_venv(params, path: Path) -> None:
    """Create a venv at *path* from the hub interpreter (replaces nothing that exists)."""
    base = hub_python(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    if installer(params) == "uv":
        run_command([uv_binary(), "venv", "--quiet", "--python", base, path], timeout=120, what="uv venv")
    else:
        run_command([base, "-m", "venv", path], timeout=300, what="python -m venv")
    path.chmod(0o755)


def install_packages(params, path: Path, specs: list[str], *, progress=None) -> None:
    """Install *specs* into the venv at *path* with uv or pip, streaming progress lines to *progress*.

    Bytecode is compiled at install time (pip does by default; uv only when asked): spawned users cannot
    write __pycache__ into the env, and without .pyc files every hub start and spawn recompiles in memory.
    """
    py = path / "bin" / "python"
    if installer(params) == "uv":
        args = [uv_binary(), "pip", "install", "--compile-bytecode", "--python", py, *specs]
    else:
        args = [py, "-m", "pip", "install", "--progress-bar", "off", *specs]
    emit = progress or (lambda line: None)
    stream_command(args, timeout=900, on_line=emit, what=f"{installer(params)} install {' '.join(specs)}")


def wanted(params) -> dict[str, str]:
    """What the hub env holds: JupyterHub, the idle culler (a service the hub runs from its env, hub/culler.py) and
    jupyterhub-systemdspawner (hub/limits.py: used where systemd is PID 1). Users' servers run from the user env
    (userenv.ipynb), which has jupyterlab and jupyterhub-singleuser at the same JupyterHub version."""
    return {"jupyterhub": params.jupyterhub_version, "jupyterhub-idle-culler": params.idle_culler_version,
            "jupyterhub-systemdspawner": params.systemdspawner_version}


def installed_versions(env: Path, names) -> dict[str, str | None]:
    """Versions of *names* installed in the venv *env* (None when absent)."""
    py = env / "bin" / "python"
    if not py.exists():
        return {n: None for n in names}
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    try:
        return json.loads(run_command([py, "-c", code, *names], timeout=60).stdout)
    except Exception:
        return {n: None for n in names}


def env_base(env: Path) -> str | None:
    """The 'home' interpreter directory recorded in the venv's pyvenv.cfg."""
    try:
        for line in (env / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return value.strip()
    except OSError:
        pass
    return None


def check_env_state(params) -> tuple[bool, str]:
    """(converged?, why) for the hub env. Read-only."""
    env, want = params.layout.env_dir, wanted(params)
    base = hub_python(params)
    if not params.layout.env_marker.exists():
        return False, "absent" if not env.exists() else "incomplete (no completion marker)"
    rec = env_base(env)
    if rec is not None and Path(rec).resolve() != base.resolve().parent:
        return False, f"built from {rec}, not {base.parent}"
    have = installed_versions(env, list(want))
    diff = {n: have.get(n) for n, v in want.items() if have.get(n) != v}
    if diff:
        return False, "versions differ: " + ", ".join(f"{n} {diff[n] or 'absent'} → {want[n]}" for n in diff)
    return True, ", ".join(f"{n} {v}" for n, v in want.items())


def ensure_hub_env(params, *, dry_run: bool = False) -> StepResult:
    """Build or update the hub venv at <prefix>/env with the pinned jupyterhub. Idempotent; prints progress."""
    env, want = params.layout.env_dir, wanted(params)
    ok, why = check_env_state(params)
    if ok:
        return StepResult("ensure_hub_env", UNCHANGED, f"{env}: {why}")
    specs = [f"{n}=={v}" for n, v in want.items()]
    if dry_run:
        return StepResult("ensure_hub_env", WOULD_CHANGE, f"would install {' '.join(specs)} into {env} with {installer(params)} ({why})")
    t0 = time.monotonic()
    base = hub_python(params)
    rec = env_base(env)
    if env.exists() and (rec is None or Path(rec).resolve() != base.resolve().parent):
        if not (env / "pyvenv.cfg").exists():
            raise PreflightError(f"{env} exists but is not a virtualenv; move it away, it is not ours to remove")
        print(f"removing {env}: built from {rec}, not {base.parent}")
        shutil.rmtree(env)
    params.layout.env_marker.unlink(missing_ok=True)
    if not env.exists():
        print(f"creating virtualenv {env} from {base}")
        create_venv(params, env)
    print(f"installing {' '.join(specs)} with {installer(params)} …")
    install_packages(params, env, specs, progress=_show_progress)
    make_world_readable(env)  # spawned users run it: no 0600 file from an installer cache filled under umask 077
    ok, state = check_env_state_after(params)
    if not ok:
        raise PreflightError(f"the hub env at {env} is not right after installing: {state}")
    params.layout.env_marker.write_text(json.dumps({"python": str(base), **want}) + "\n")
    return StepResult("ensure_hub_env", CHANGED, f"{env}: {state} ({installer(params)}, {time.monotonic() - t0:.1f} s; was: {why})")


def _show_progress(line: str) -> None:
    """Print installer output, minus the one-line-per-package listing."""
    if line.strip() and not line.lstrip().startswith(("+ ", "- ", "Requirement already")):
        print("  " + line.strip())


def check_env_state_after(params) -> tuple[bool, str]:
    have = installed_versions(params.layout.env_dir, list(wanted(params)))
    bad = {n: v for n, v in wanted(params).items() if have.get(n) != v}
    if bad:
        return False, ", ".join(f"{n} is {have.get(n)}, wanted {v}" for n, v in bad.items())
    return True, ", ".join(f"{n} {v}" for n, v in wanted(params).items())

