"""Extra kernels (user_kernels): each a venv of its own beside the user env, registered in the user env's
share/jupyter/kernels so every user's JupyterLab offers it. Removing one from the parameter removes its spec and venv."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.userenv import build


def kernel_lock(params, name: str) -> Path:
    return params.layout.user_kernel_dir(name) / "hubrunbook-requirements.txt"


def spec_dir(params, name: str) -> Path:
    return params.layout.userenv_kernelspecs_dir / name


def spec_is_ours(params, path: Path) -> bool:
    """A kernel spec whose interpreter lies in one of our kernel venvs (userenv-kernels/<name>/bin/python)."""
    try:
        argv = json.loads((path / "kernel.json").read_text()).get("argv") or []
    except (OSError, ValueError):
        return False
    return bool(argv) and Path(argv[0]).parent.parent.parent == params.layout.user_kernels_dir


def spec_state(params, name: str) -> tuple[bool, str]:
    want = str(params.layout.user_kernel_dir(name) / "bin" / "python")
    try:
        spec = json.loads((spec_dir(params, name) / "kernel.json").read_text())
    except (OSError, ValueError):
        return False, "no kernel spec"
    if (spec.get("argv") or [None])[0] != want:
        return False, f"its spec runs {(spec.get('argv') or ['?'])[0]}, not {want}"
    return True, "registered"


def stale(params) -> tuple[list[Path], list[Path]]:
    """(kernel specs, kernel venvs) of ours that the parameter no longer lists."""
    lay, keep = params.layout, set(params.user_kernels)
    specs = [p for p in sorted(lay.userenv_kernelspecs_dir.glob("*")) if p.name not in keep and spec_is_ours(params, p)]
    venvs = [p for p in sorted(lay.user_kernels_dir.glob("*")) if p.name not in keep and (p / "pyvenv.cfg").exists()
             and not p.is_symlink()]
    return specs, venvs


def ensure_user_kernels(params, *, dry_run: bool = False) -> StepResult:
    """Build, sync and register each extra kernel; remove the ones no longer listed. Idempotent (verified like the
    user env: installed = compiled, spec points at the kernel's venv)."""
    if not (params.layout.userenv_dir / "pyvenv.cfg").exists() and not dry_run:
        raise PreflightError("the user env does not exist yet: ensure_user_env builds it first")
    t0, rows = time.monotonic(), []
    base = build.base_python(params, install=not dry_run) if params.user_kernels else None
    for name, packages in params.user_kernels.items():
        env = params.layout.user_kernel_dir(name)
        py = env / "bin" / "python" if (env / "bin" / "python").exists() else base
        lock_text = build.compile_requirements(params, ["ipykernel", *packages], py, kernel_lock(params, name))
        want = build.parse_lock(lock_text)
        ok, why = build.venv_state(params, env, base, want)
        reg, reg_why = spec_state(params, name)
        if ok and reg:
            rows.append((name, UNCHANGED, f"{why}; {reg_why}"))
            continue
        if dry_run:
            rows.append((name, WOULD_CHANGE, why if not ok else reg_why))
            continue
        if not ok:
            params.layout.user_kernels_dir.mkdir(mode=0o755, exist_ok=True)
            build.sync_venv(params, env, base, lock_text, kernel_lock(params, name))
        run_command([env / "bin" / "python", "-m", "ipykernel", "install", "--prefix", params.layout.userenv_dir,
                     "--name", name, "--display-name", f"Python ({name})"], timeout=120, what=f"register kernel {name}")
        build.make_world_readable(spec_dir(params, name))
        left = build.diff_sets(build.installed(env, params), want)
        reg, reg_why = spec_state(params, name)
        if left or not reg:
            raise PreflightError(f"kernel {name} is not right after the sync: {', '.join(left) or reg_why}")
        rows.append((name, CHANGED, f"{len(want)} packages as compiled; registered (was: {why if not ok else reg_why})"))
    specs, venvs = stale(params)
    for path in [*specs, *venvs]:
        if not dry_run:
            shutil.rmtree(path)
        rows.append((path.name, WOULD_CHANGE if dry_run else CHANGED, f"removed {path} (no longer in user_kernels)"))
    changed = [r for r in rows if r[1] != UNCHANGED]
    if not rows:
        return StepResult("ensure_user_kernels", UNCHANGED, "no extra kernels (user_kernels is empty)")
    if not changed:
        return StepResult("ensure_user_kernels", UNCHANGED, f"{len(rows)} kernel(s) registered and verified", rows)
    status = WOULD_CHANGE if dry_run else CHANGED
    return StepResult("ensure_user_kernels", status, f"{len(changed)} kernel change(s) in {time.monotonic() - t0:.1f} s",
                      rows)
