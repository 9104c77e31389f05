"""Build the user env with uv: compile the complete pinned requirement set, sync the env to it, verify as a user.

Idempotent by verification: every run compiles the wanted set (uv prefers the versions of the last lock, so nothing
moves unless the parameters ask for it) and compares it with what ``uv pip freeze`` finds installed; equal sets and a
jupyterhub-singleuser an unprivileged user can run mean "unchanged". Otherwise ``uv pip sync`` installs, upgrades and
removes exactly the difference. The sync happens in place: running servers keep the modules they imported, uv replaces
each package's files as a unit, and a new kernel or server sees the new set (a copy built beside and swapped in would
need its scripts rewritten, since a venv's scripts name its path, and would change nothing for running processes).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hubrunbook.core.errors import CommandError, PreflightError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, OK, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.host.system import find_hub_python, make_world_readable, world_runnable
from hubrunbook.hub import hubenv
from hubrunbook.userenv.requirements import requirements_file

BASE_PACKAGES = ("jupyterhub", "jupyterlab", "ipykernel")


# --- what is wanted ------------------------------------------------------------------------------------
def user_requirements(params) -> tuple[list[str], list[str]]:
    """(requirements, notes): user_packages, then those of user_requirements."""
    reqs, notes = list(params.user_packages), []
    if params.user_requirements:
        more, notes = requirements_file(params.user_requirements)
        reqs += more
    return reqs, notes


def wanted_requirements(params) -> list[str]:
    """Everything the user env holds: jupyterhub at the hub's version, jupyterlab, ipykernel and the user's packages."""
    return [f"jupyterhub=={params.jupyterhub_version}", f"jupyterlab=={params.jupyterlab_version}", "ipykernel",
            *user_requirements(params)[0]]


def listed_packages(params) -> list[str]:
    """The distribution names a user asked for (what the verification imports), in order, once each."""
    names = []
    for spec in user_requirements(params)[0]:
        name = canonicalize_name(Requirement(spec).name)
        if name not in names:
            names.append(name)
    return names


# --- uv ------------------------------------------------------------------------------------------------
def uv(params) -> Path:
    found = hubenv.uv_binary()
    if found is None:
        raise PreflightError("the user env is built with uv, which is not installed in the tool env: run "
                             "`make .venv/.installed` (uv is a dependency of hubrunbook)")
    return found


def uv_env(params) -> dict[str, str]:
    """uv's environment: interpreters it installs go under the prefix (every user can run them), never root's home."""
    # no colour: a Jupyter kernel sets FORCE_COLOR/CLICOLOR_FORCE, and uv then writes ANSI codes into `pip freeze`
    return {"UV_PYTHON_INSTALL_DIR": str(params.layout.user_python_dir), "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}


def base_python(params, *, install: bool = True) -> Path:
    """The interpreter the user env (and its extra kernels) are built from, runnable by every user."""
    choice = params.user_python
    if choice == "auto":
        return hubenv.hub_python(params)
    if choice.startswith("/"):
        py, why = find_hub_python(choice)
        if py is None:
            raise PreflightError(f"user_python {choice}: {why}")
        return py
    found = _managed_python(params, choice)
    if found is None and install:
        lay = params.layout
        lay.root.mkdir(parents=True, exist_ok=True)
        lay.user_python_dir.mkdir(mode=0o755, exist_ok=True)
        try:
            run_command([uv(params), "--color", "never", "python", "install", choice], env=uv_env(params), timeout=600,
                        what=f"uv python install {choice}")
        except CommandError as exc:
            raise PreflightError(f"user_python {choice}: uv could not install it into {lay.user_python_dir} ({exc}). "
                                 "uv downloads its Pythons from GitHub (python-build-standalone): allow that, or set "
                                 "user_python: 'auto' (the hub env's Python) or an absolute path") from None
        make_world_readable(lay.user_python_dir)
        found = _managed_python(params, choice)
    if found is None:
        raise PreflightError(f"user_python {choice}: not installed under {params.layout.user_python_dir}")
    ok, why = world_runnable(found)
    if not ok:
        raise PreflightError(f"user_python {choice}: {why}; every user must be able to run it")
    return found


def _managed_python(params, version: str) -> Path | None:
    try:
        out = run_command([uv(params), "--color", "never", "python", "find", "--managed-python", "--no-project", version],
                          env=uv_env(params), timeout=60, check=False).stdout.strip()
    except CommandError:
        return None
    path = Path(out) if out else None
    if path and params.layout.user_python_dir in path.resolve().parents and path.exists():
        return path
    return None


# --- locks and installed sets ---------------------------------------------------------------------------------
def parse_lock(text: str) -> dict[str, str]:
    """{canonical name: version} of a compiled requirements text (name==version lines)."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, _, version = line.partition("==")
            out[canonicalize_name(name.split("[", 1)[0].strip())] = version.strip()
    return out


def compile_requirements(params, reqs: list[str], python: Path, previous: Path | None) -> str:
    """The complete pinned set for *reqs* (uv pip compile), preferring the versions pinned in *previous*. Read-only."""
    with tempfile.TemporaryDirectory(prefix="hrb-userenv-") as tmp:
        src, out = Path(tmp) / "requirements.in", Path(tmp) / "requirements.txt"
        src.write_text("\n".join(reqs) + "\n")
        if previous is not None and previous.exists():
            shutil.copyfile(previous, out)  # uv keeps these versions where they still fit
        try:
            run_command([uv(params), "--color", "never", "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", python,
                         src, "-o", out], env=uv_env(params), timeout=600, what="uv pip compile")
        except CommandError as exc:
            from_yml = params.user_requirements.endswith((".yml", ".yaml"))
            hint = (" A package from a conda environment.yml may not exist on PyPI under that name (conda-only): use "
                    "its PyPI name in the pip: list, or drop it." if from_yml else "")
            raise PreflightError(f"the user env's packages cannot be resolved, nothing was changed: {exc}{hint}") from None
        return out.read_text()


def installed(env: Path, params) -> dict[str, str]:
    """{canonical name: version} of what is installed in the venv *env* ({} when there is none)."""
    py = env / "bin" / "python"
    if not py.exists():
        return {}
    try:
        text = run_command([uv(params), "--color", "never", "pip", "freeze", "--python", py], env=uv_env(params), timeout=60).stdout
    except CommandError:
        return {}
    return parse_lock(text)


def diff_sets(have: dict[str, str], want: dict[str, str]) -> list[str]:
    """'+name version', '-name version', 'name old → new': what a sync changes, sorted by name."""
    rows = []
    for name in sorted(set(have) | set(want)):
        if name not in have:
            rows.append(f"+{name} {want[name]}")
        elif name not in want:
            rows.append(f"-{name} {have[name]}")
        elif have[name] != want[name]:
            rows.append(f"{name} {have[name]} → {want[name]}")
    return rows


def runs_as_user(env: Path, code: str = "import jupyterhub, jupyterlab, ipykernel; print(jupyterhub.__version__)",
                 user: str = "nobody") -> tuple[bool, str]:
    """Run *code* with the env's python as an unprivileged account: (ok, output or error)."""
    py = env / "bin" / "python"
    try:
        # a clean environment: nothing of root's (PATH, variables of the runner) reaches the unprivileged process
        out = run_command(["runuser", "-u", user, "--", "env", "-i", "HOME=/nonexistent", "PATH=/usr/bin:/bin",
                           "PYTHONDONTWRITEBYTECODE=1", "MPLBACKEND=Agg", py, "-c", code], timeout=120, cwd="/",
                          what=f"{py} as {user}")
    except CommandError as exc:
        return False, str(exc).strip().splitlines()[-1] if str(exc).strip() else "failed"
    return True, out.stdout.strip()


# --- one venv synced to a requirement set (the user env and each extra kernel) ---------------------------------
def venv_state(params, env: Path, base: Path, want: dict[str, str]) -> tuple[bool, str]:
    """(converged?, why). Read-only."""
    if not (env / "pyvenv.cfg").exists():
        return False, "absent"
    rec = hubenv.env_base(env)
    if rec is not None and Path(rec).resolve() != base.resolve().parent:
        return False, f"built from {rec}, not {base.parent}"
    changes = diff_sets(installed(env, params), want)
    if changes:
        return False, f"{len(changes)} change(s): " + ", ".join(changes[:12]) + (" …" if len(changes) > 12 else "")
    return True, f"{len(want)} packages as compiled"


def sync_venv(params, env: Path, base: Path, lock_text: str, lock_path: Path) -> None:
    """Create *env* from *base* if needed (a venv from another interpreter is rebuilt) and sync it to *lock_text*."""
    rec = hubenv.env_base(env)
    if env.exists() and rec is not None and Path(rec).resolve() != base.resolve().parent:
        print(f"rebuilding {env}: built from {rec}, not {base.parent} (servers running from it need a restart)")
        shutil.rmtree(env)
    if env.exists() and not (env / "pyvenv.cfg").exists():
        raise PreflightError(f"{env} exists but is not a virtualenv; move it away, it is not ours to remove")
    if not env.exists():
        env.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating {env} from {base}")
        run_command([uv(params), "--color", "never", "venv", "--quiet", "--python", base, env], env=uv_env(params), timeout=300,
                    what="uv venv")
    env.chmod(0o755)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="hrb-lock-") as tmp:
        tmp.write(lock_text)
        tmp.flush()
        run_command([uv(params), "--color", "never", "pip", "sync", "--compile-bytecode", "--python", env / "bin" / "python", tmp.name],
                    env=uv_env(params), timeout=1800, what=f"uv pip sync {env}")
    _write_public(lock_path, lock_text)
    make_world_readable(env)  # users run it: no 0600 file from a cache filled under umask 077


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


# --- the steps ---------------------------------------------------------------------------------------------------
def check_user_env_plan(params, *, dry_run: bool = False) -> StepResult:
    """What the user env will hold: the requirements by source, translations from environment.yml, the Python. Read-only."""
    reqs, notes = user_requirements(params)
    rows = [("jupyterhub (for jupyterhub-singleuser)", "pinned", f"=={params.jupyterhub_version}: the hub's version"),
            ("jupyterlab", "pinned", f"=={params.jupyterlab_version}"), ("ipykernel", "base", "the default kernel")]
    rows += [(spec, "user_packages", "") for spec in params.user_packages]
    rows += [(spec, "user_requirements", params.user_requirements) for spec in reqs[len(params.user_packages):]]
    rows += [(note, "note", "environment.yml") for note in notes]
    for name, pkgs in params.user_kernels.items():
        rows.append((f"kernel {name}", "user_kernels", ", ".join(["ipykernel", *pkgs])))
    py = params.user_python if params.user_python != "auto" else f"auto: {hubenv.hub_python(params)}"
    return StepResult("check_user_env_plan", OK, f"{len(reqs)} user package(s) + jupyterlab, jupyterhub, ipykernel; "
                      f"{len(params.user_kernels)} extra kernel(s); Python {py}", rows)


def ensure_user_env(params, *, dry_run: bool = False) -> StepResult:
    """Build or sync <prefix>/userenv to the compiled requirement set; verify it as an unprivileged user."""
    lay = params.layout
    env, t0 = lay.userenv_dir, time.monotonic()
    if dry_run and params.user_python not in ("auto",) and not params.user_python.startswith("/") \
            and _managed_python(params, params.user_python) is None:
        return StepResult("ensure_user_env", WOULD_CHANGE, f"would install Python {params.user_python} under "
                          f"{lay.user_python_dir} with uv and build {env}")
    base = base_python(params)
    py_for_compile = env / "bin" / "python" if (env / "bin" / "python").exists() else base
    lock_text = compile_requirements(params, wanted_requirements(params), py_for_compile, lay.userenv_lock)
    want = parse_lock(lock_text)
    ok, why = venv_state(params, env, base, want)
    if ok:
        good, out = runs_as_user(env)
        if good and out == params.jupyterhub_version and lay.userenv_bin("jupyterhub-singleuser").exists():
            return StepResult("ensure_user_env", UNCHANGED, f"{env}: {why}; jupyterhub {out}, jupyterlab "
                              f"{want.get('jupyterlab')}; verified: installed = compiled, runs as nobody")
        why = f"does not run as a user: {out}" if not good else f"jupyterhub {out} ≠ {params.jupyterhub_version}"
    changes = diff_sets(installed(env, params), want)
    if dry_run:
        return StepResult("ensure_user_env", WOULD_CHANGE, f"would sync {env}: {len(changes)} change(s) ({why})",
                          [(c, "would change", "") for c in changes] if why != "absent" else [])
    lay.root.mkdir(parents=True, exist_ok=True)
    print(f"syncing {env}: {len(changes)} change(s)")
    sync_venv(params, env, base, lock_text, lay.userenv_lock)
    after = diff_sets(installed(env, params), want)
    good, out = runs_as_user(env)
    if after or not good or out != params.jupyterhub_version:
        raise PreflightError(f"the user env {env} is not right after the sync: "
                             + (", ".join(after) if after else f"as nobody: {out}"))
    lay.userenv_marker.write_text(json.dumps({"python": str(base), "jupyterhub": params.jupyterhub_version,
                                              "jupyterlab": want.get("jupyterlab"), "packages": len(want)}) + "\n")
    lay.userenv_marker.chmod(0o644)
    rows = [(c, "changed", "") for c in changes] if why != "absent" else []  # a cold build: the count says enough
    return StepResult("ensure_user_env", CHANGED, f"{env}: {len(changes)} change(s) in {time.monotonic() - t0:.1f} s "
                      f"(was: {why}); jupyterhub {out}, runs as nobody", rows)


def ensure_user_env_matches_hub(params, *, dry_run: bool = False) -> StepResult:
    """upgrade.ipynb's last step: the user env gets the jupyterhub the hub env really holds (after a verified upgrade
    the new version; after a rollback the old one), and jupyterlab_version. A dry run reports the parameters' version."""
    hub = hubenv.installed_versions(params.layout.env_dir, ["jupyterhub"])["jupyterhub"]
    target = params.jupyterhub_version if dry_run or hub is None else hub
    res = ensure_user_env(params.model_copy(update={"jupyterhub_version": target}), dry_run=dry_run)
    note = "" if target == params.jupyterhub_version else (
        f" (the hub runs jupyterhub {hub}, not {params.jupyterhub_version}: the upgrade did not go through, and the "
        "user env follows the hub)")
    return StepResult("ensure_user_env_matches_hub", res.status, res.detail + note, res.rows)


def reinstall(params, kernel: str, package: str) -> str:
    """Reinstall *package* at its locked version in the user env (kernel 'python3') or an extra kernel's env."""
    lay = params.layout
    env, lock = ((lay.userenv_dir, lay.userenv_lock) if kernel == "python3"
                 else (lay.user_kernel_dir(kernel), lay.user_kernel_dir(kernel) / "hubrunbook-requirements.txt"))
    pins = parse_lock(lock.read_text()) if lock.exists() else {}
    name = canonicalize_name(package)
    if name not in pins:
        raise PreflightError(f"{package} is not in {lock}: run userenv.ipynb")
    run_command([uv(params), "--color", "never", "pip", "install", "--reinstall", "--no-deps", "--compile-bytecode", "--python",
                 env / "bin" / "python", f"{name}=={pins[name]}"], env=uv_env(params), timeout=600,
                what=f"uv pip install --reinstall {name}")
    make_world_readable(env)
    return f"reinstalled {name} {pins[name]} in {env}"


def check_user_env(params) -> tuple[bool, str]:
    """(usable?, why) of the user env as users meet it: the entry point exists and runs, jupyterhub is the hub's
    version. Read-only (troubleshoot and configure's preflight)."""
    env = params.layout.userenv_dir
    single = params.layout.userenv_bin("jupyterhub-singleuser")
    if not (env / "pyvenv.cfg").exists():
        return False, f"{env} does not exist (run userenv.ipynb)"
    if not single.exists():
        return False, f"{single} does not exist"
    ok, why = world_runnable(env / "bin" / "python")
    if not ok:
        return False, f"its python cannot be run by users: {why}"
    good, out = runs_as_user(env)
    if not good:
        return False, f"as nobody, `import jupyterhub, jupyterlab, ipykernel` fails: {out}"
    if out != params.jupyterhub_version:
        return False, f"jupyterhub {out} in the user env, the hub runs {params.jupyterhub_version}"
    return True, f"jupyterhub {out}"
