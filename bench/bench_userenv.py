"""Benchmark userenv.ipynb and spawning from the user env.

(a) floor: `uv venv` + `uv pip install --compile-bytecode` of what the user env holds (jupyterhub, jupyterlab,
    ipykernel and the default user_packages) into a new venv, warm uv cache;
(b) userenv.ipynb cold on a new prefix after install.ipynb (papermill: kernel start, compile, sync, verification);
(c) userenv.ipynb converged (compile again, compare with what is installed, run as nobody, imports as a user in a
    kernel through the hub);
(d) spawn time: POST /hub/api/users/<u>/server until ready, for the same user on the same hub, alternating
    c.Spawner.cmd between the user env's jupyterhub-singleuser and today's (before issue 13: the hub env with
    jupyterlab installed in it, built as install.ipynb used to: jupyterhub + jupyterlab, bytecode compiled).
Writes docs/benchmarks.md (section "userenv"). Creates users hrb-bu-* and removes them (sandbox teardown).
Usage: .venv/bin/python bench/bench_userenv.py [--runs 3] [--spawns 5]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import BENCH_ROOT, median, run_runbook, sh, timed, write_section  # noqa: E402
from support.sandbox import port_params, teardown_sandbox  # noqa: E402

from hubrunbook.core.params import Params, build_params  # noqa: E402
from hubrunbook.host.system import make_world_readable  # noqa: E402
from hubrunbook.host.users import user_password  # noqa: E402
from hubrunbook.hub import probe, service  # noqa: E402
from hubrunbook.hub.hubenv import uv_binary  # noqa: E402

D = Params()
USER, ADMIN = "hrb-bu-user", "hrb-bu-admin"


def floor(env: Path) -> None:
    sh(uv_binary(), "venv", "-q", "--python", "/usr/bin/python3", env)
    sh(uv_binary(), "pip", "install", "-q", "--compile-bytecode", "--python", env / "bin/python",
       f"jupyterhub=={D.jupyterhub_version}", f"jupyterlab=={D.jupyterlab_version}", "ipykernel", *D.user_packages)


def today_env(env: Path) -> None:
    """The hub env as install.ipynb built it before issue 13: jupyterhub + jupyterlab, bytecode compiled."""
    sh(uv_binary(), "venv", "-q", "--python", "/usr/bin/python3", env)
    sh(uv_binary(), "pip", "install", "-q", "--compile-bytecode", "--python", env / "bin/python",
       f"jupyterhub=={D.jupyterhub_version}", f"jupyterlab=={D.jupyterlab_version}")
    make_world_readable(env)


def set_spawner_cmd(params, singleuser: Path) -> None:
    """Point our c.Spawner.cmd line at *singleuser* and restart the hub (a bench-only edit of the marked line)."""
    path = params.config_path
    text = re.sub(r"^c\.Spawner\.cmd = .*$", f"c.Spawner.cmd = [{str(singleuser)!r}]  # hubrunbook", path.read_text(),
                  flags=re.M)
    path.write_text(text)
    service.stop_managed_hub(params)
    service.start_managed_hub(params)


def spawns(params, singleuser: Path, n: int) -> list[float]:
    set_spawner_cmd(params, singleuser)
    url = params.public_url
    session = probe.login(url, USER, user_password(params, USER))
    out = []
    for _ in range(n):
        out.append(probe.start_server(session, url, USER, timeout=120))
        probe.stop_server(session, url, USER)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--spawns", type=int, default=5)
    args = ap.parse_args()
    a, b, c = [], [], []
    steps: dict[str, list[float]] = {}
    for i in range(args.runs):
        work = BENCH_ROOT / f"userenv-{i}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        a.append(timed(lambda: floor(work / "floor")))
        values = {**port_params(), "prefix": str(work / "prefix"), "service": "process"}
        pfile = work / "params.yaml"
        pfile.write_text(yaml.safe_dump(values))
        run_runbook("install", pfile, work / "install.ipynb")
        b.append(timed(lambda: run_runbook("userenv", pfile, work / "cold.ipynb")))
        for line in (work / "prefix/state/audit.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry.get("runbook", "userenv") == "userenv" and entry["step"] in ("ensure_user_env", "check_user_imports"):
                steps.setdefault(entry["step"], []).append(entry["seconds"])
        c.append(timed(lambda: run_runbook("userenv", pfile, work / "converged.ipynb")))
        shutil.rmtree(work, ignore_errors=True)
        print(f"run {i + 1}: floor {a[-1]:.1f} s, cold {b[-1]:.1f} s, converged {c[-1]:.1f} s", flush=True)

    # spawn time: one configured hub, alternating the two envs
    work = BENCH_ROOT / "userenv-spawn"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    work.chmod(0o755)
    values = {**port_params(), "prefix": str(work / "prefix"), "users": [USER], "admin_users": [ADMIN]}
    pfile = work / "params.yaml"
    pfile.write_text(yaml.safe_dump(values))
    params = build_params(values)
    user_env, today = [], []
    try:
        for name in ("install", "userenv", "configure"):
            run_runbook(name, pfile, work / f"{name}.ipynb")
        today_env(work / "today-env")
        for _ in range(2):  # alternate: neither variant gets only a warm page cache
            user_env += spawns(params, params.layout.userenv_bin("jupyterhub-singleuser"), args.spawns)
            today += spawns(params, work / "today-env/bin/jupyterhub-singleuser", args.spawns)
        print(f"spawn: user env {median(user_env):.2f} s, today's {median(today):.2f} s", flush=True)
    finally:
        teardown_sandbox(params)
        shutil.rmtree(work, ignore_errors=True)

    fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
    body = f"""## userenv.ipynb and spawning from the user env (issue 13)

`.venv/bin/python bench/bench_userenv.py --runs {args.runs} --spawns {args.spawns}` (root); warm uv cache. The user
env holds jupyterhub {D.jupyterhub_version}, jupyterlab {D.jupyterlab_version}, ipykernel and the default
`user_packages` ({", ".join(D.user_packages)}).

| variant | median | runs (s) |
|---|---|---|
| (a) floor: `uv venv` + `uv pip install --compile-bytecode` of the same set | {median(a):.1f} s | {fmt(a)} |
| (b) userenv.ipynb cold, new prefix after install.ipynb (papermill, compile, sync, imports as nobody) | {median(b):.1f} s | {fmt(b)} |
| (c) userenv.ipynb converged (compile, compare with `uv pip freeze`, run as nobody, imports as nobody: no hub in this prefix) | {median(c):.1f} s | {fmt(c)} |

Cold run, median seconds per step (`state/audit.jsonl`): {", ".join(f"{k} {median(v):.1f}" for k, v in steps.items())}.

Spawn time (POST `/hub/api/users/<u>/server` until ready; same hub and user, {len(user_env)} spawns each,
alternating):

| `c.Spawner.cmd` | median | min | max |
|---|---|---|---|
| the user env's `jupyterhub-singleuser` (`<prefix>/userenv`) | {median(user_env):.2f} s | {min(user_env):.2f} s | {max(user_env):.2f} s |
| today's: the hub env with jupyterlab in it | {median(today):.2f} s | {min(today):.2f} s | {max(today):.2f} s |"""
    write_section("userenv", body)


if __name__ == "__main__":
    main()
