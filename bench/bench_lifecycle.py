"""Benchmark the rest of a hub's life: backup, restore, a converged upgrade, uninstall (issue 10).

On one deployment of its own (install + configure with two users, a managed hub on free ports), each runbook with
papermill as `make deploy` runs them (kernel start included):
(1) backup.ipynb: the first run (an archive written while the hub runs) and a converged one (nothing changed since
    the newest archive: none written), median of --runs; the archive's size;
(2) restore.ipynb of the newest archive onto the same prefix (pre-restore archive, hub stopped, files written, hub
    started, users and admins checked), then the same archive again (no changes);
(3) upgrade.ipynb with the installed versions (converged: no backup, no build);
(4) uninstall.ipynb: the default dry run, then the confirmed run (final backup outside the prefix, hub stopped,
    accounts, files), which also tears the deployment down.
Writes docs/benchmarks.md (section "lifecycle"). Creates users hrb-bl-user, hrb-bl-admin; uninstall removes them.
Usage: .venv/bin/python bench/bench_lifecycle.py [--runs 3]   (root)
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

from hubrunbook.backup.archive import archives  # noqa: E402
from hubrunbook.core.params import build_params  # noqa: E402
from hubrunbook.host.users import remove_users  # noqa: E402
from hubrunbook.hub.service import stop_managed_hub  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    runs = ap.parse_args().runs
    work = BENCH_ROOT / "lifecycle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port, hub, api = free_ports(3)
    values = {"prefix": str(work / "prefix"), "port": port, "hub_port": hub, "proxy_api_port": api,
              "service": "process", "users": ["hrb-bl-user"], "admin_users": ["hrb-bl-admin"],
              "uninstall_backup_dir": str(work / "final")}
    params = build_params(values)

    def pfile(**extra) -> Path:
        path = work / f"params-{len(list(work.glob('params-*')))}.yaml"
        path.write_text(yaml.safe_dump({**values, **extra}))
        return path

    base = pfile()
    run = lambda name, p=base: run_runbook(name, p, work / f"{name}-out.ipynb")  # noqa: E731
    try:
        run("install")
        run("configure")
        first = timed(lambda: run("backup"))
        size = archives(params.backup_path)[-1].stat().st_size
        converged_backup = [timed(lambda: run("backup")) for _ in range(runs)]
        latest = pfile(restore_archive="latest")
        restore = timed(lambda: run("restore", latest))
        restore_again = timed(lambda: run("restore", latest))
        upgrade = [timed(lambda: run("upgrade")) for _ in range(runs)]
        dry = timed(lambda: run("uninstall"))
        gone = timed(lambda: run("uninstall", pfile(confirm_uninstall=True)))
    except BaseException:
        stop_managed_hub(params)
        remove_users(params, values["users"] + values["admin_users"])
        raise
    fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    body = f"""## backup, restore, upgrade, uninstall (issue 10: the rest of a hub's life)

`.venv/bin/python bench/bench_lifecycle.py --runs {runs}` (root). One deployment (install + configure, two users,
managed hub); each runbook with papermill, kernel start included.

| runbook | run | time |
|---|---|---|
| backup.ipynb | first: archive written while the hub runs ({size / 1024:.0f} KiB) | {first:.1f} s |
| backup.ipynb | converged: nothing changed since the newest archive | {median(converged_backup):.1f} s ({fmt(converged_backup)}) |
| restore.ipynb | the newest archive onto the same prefix (hub stopped and started, users checked) | {restore:.1f} s |
| restore.ipynb | the same archive again: no changes | {restore_again:.1f} s |
| upgrade.ipynb | converged (installed versions): no backup, no build | {median(upgrade):.1f} s ({fmt(upgrade)}) |
| uninstall.ipynb | default dry run | {dry:.1f} s |
| uninstall.ipynb | confirmed: final backup, hub, accounts, files | {gone:.1f} s |

A real upgrade (JupyterHub 5.5.4 → 6.1.1: new env built beside the old, schema upgraded, verified) is timed by its
integration test, not here: it is dominated by the env build (see install.ipynb above)."""
    write_section("lifecycle", body)
    print(body)


if __name__ == "__main__":
    main()
