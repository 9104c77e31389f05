"""Benchmark configure.ipynb: converged re-run of install + configure, and provisioning N local users.

(1) after a first deployment, `papermill install` + `papermill configure` again (converged), median of --runs;
(2) ensure_users + ensure_config for N = 10, 50, 100 users (system user, password, notebook dir, allow list),
    then verifying them (a second ensure_users, which checks every account, password hash and notebook dir).
Writes docs/benchmarks.md (section "configure"). Creates users hrb-b-NNN and removes them.
Usage: .venv/bin/python bench/bench_configure.py [--runs 3]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import BENCH_ROOT, median, run_runbook, timed, write_section  # noqa: E402
from support.sandbox import free_ports  # noqa: E402

from hubrunbook.hub.config import ensure_config, ensure_config_file  # noqa: E402
from hubrunbook.core.params import build_params  # noqa: E402
from hubrunbook.hub.service import stop_managed_hub  # noqa: E402
from hubrunbook.host.users import ensure_users, remove_users  # noqa: E402


def converged(runs: int) -> list[float]:
    work = BENCH_ROOT / "configure"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port, hub, api = free_ports(3)
    values = {"prefix": str(work / "prefix"), "port": port, "hub_port": hub, "proxy_api_port": api,
              "users": ["hrb-b-user"], "admin_users": ["hrb-b-admin"]}
    pfile = work / "params.yaml"
    pfile.write_text(yaml.safe_dump(values))
    params = build_params(values)
    try:
        run_runbook("install", pfile, work / "i.ipynb")
        run_runbook("userenv", pfile, work / "u.ipynb")
        run_runbook("configure", pfile, work / "c.ipynb")
        out = []
        for i in range(runs):
            out.append(timed(lambda: (run_runbook("install", pfile, work / "i2.ipynb"), run_runbook("configure", pfile, work / "c2.ipynb"))))
            print(f"converged install + configure: {out[-1]:.1f} s", flush=True)
        return out
    finally:
        stop_managed_hub(params)
        remove_users(params, values["users"] + values["admin_users"])


def provisioning(sizes) -> list[tuple[int, float, float]]:
    base = build_params({"prefix": str(BENCH_ROOT / "configure" / "prefix")})
    ensure_config_file(base)
    rows = []
    for n in sizes:
        names = [f"hrb-b-{i:03d}" for i in range(n)]
        params = base.model_copy(update={"users": names, "admin_users": names[:1]})
        try:
            create = timed(lambda: (ensure_users(params), ensure_config(params)))
            verify = timed(lambda: ensure_users(params))
        finally:
            remove_users(params, names)
        rows.append((n, create, verify))
        print(f"{n} users: create {create:.1f} s, verify {verify:.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    runs = ap.parse_args().runs
    conv = converged(runs)
    prov = provisioning((10, 50, 100))
    table = "\n".join(f"| {n} | {c:.1f} s | {v:.1f} s | {1000 * c / n:.0f} ms | {1000 * v / n:.0f} ms |" for n, c, v in prov)
    body = f"""## configure.ipynb (issue: configure runbook)

`.venv/bin/python bench/bench_configure.py --runs {runs}`

Converged re-run of install.ipynb + configure.ipynb (two papermill runs, each with its own kernel; configure's
verification logs in, spawns a server, writes a file as the user and checks two refusals):
median **{median(conv):.1f} s** (runs: {", ".join(f"{x:.1f}" for x in conv)}; target ≤ 10 s).

Provisioning local users (`ensure_users` + `ensure_config`: system user, password via chpasswd, notebook dir,
allow list in the config file verified by JupyterHub's loader), then verifying them (a second `ensure_users`:
account, password hash against /etc/shadow, notebook dir owner and mode):

| users | create | verify | create per user | verify per user |
|---|---|---|---|---|
{table}
"""
    write_section("configure", body)
    print(body)


if __name__ == "__main__":
    main()
