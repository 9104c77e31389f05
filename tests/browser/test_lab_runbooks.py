"""The runbooks in JupyterLab, in a real browser: open, Run All, read the rendered step rows and summary.

JupyterLab is started as `make lab` starts it (python -m hubrunbook.lab) and driven by Debian's chromium through
Playwright. The runbooks opened are copies of runbooks/*.ipynb prepared by the one runner (papermill
--prepare-only) with a test prefix under HRB_TEST_ROOT, free loopback ports, `node: wheel` and `service: process`;
runbooks/ itself is never written. A missing chromium fails (it never skips): `apt-get install chromium`.

Order matters (pytest runs the file top to bottom): install cold, install converged on the same prefix, then
troubleshoot read-only on what install left (a hub installed but never configured).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hubrunbook.core.params import build_params
from support.sandbox import TEST_ROOT, free_port, port_params, teardown_sandbox

CHROMIUM = Path(os.environ.get("HRB_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(__file__).resolve().parents[2] / "docs"  # with HRB_UPDATE_SCREENSHOTS=1 the screenshots land in docs/


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium is not installed ({CHROMIUM} missing): apt-get install chromium "
                    "(Playwright's own browser download does not work here; never `playwright install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab_root():
    root = TEST_ROOT / f"lab-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "nb").mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def test_params(lab_root):
    """One test deployment for the session: its prefix, free ports, the Node.js hubrunbook installs."""
    params = port_params(prefix=str(lab_root / "prefix"))
    yield params
    teardown_sandbox(build_params(params))


@pytest.fixture(scope="module")
def lab(lab_root, test_params):
    """JupyterLab started by `python -m hubrunbook.lab` on a free port, showing the prepared runbook copies."""
    from hubrunbook.core.runner import execute_runbook

    nb = lab_root / "nb"
    execute_runbook("install", nb / "install.ipynb", test_params, prepare_only=True)
    execute_runbook("troubleshoot", nb / "troubleshoot.ipynb", test_params, prepare_only=True)
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hubrunbook.lab", "--port", str(port), "--root-dir", str(nb)],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Open:"):
            break
    started = time.monotonic() - t0
    m = re.search(r"token in (\S+),", "".join(lines))
    assert m, f"hubrunbook.lab printed no URL: {lines!r}"
    info = {"url": f"http://127.0.0.1:{port}/", "token": Path(m.group(1)).read_text(), "token_file": Path(m.group(1)),
            "pid": proc.pid, "root": nb, "params": test_params, "started": started, "printed": "".join(lines)}
    print(f"\nJupyterLab answered {started:.1f} s after `python -m hubrunbook.lab`", file=sys.stderr)
    yield info
    proc.terminate()
    proc.wait(timeout=60)
    assert not info["token_file"].exists(), "the token file must go with the server"


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str, root: Path) -> Path:
    """Screenshot of the page into docs/ (HRB_UPDATE_SCREENSHOTS=1) or the test root."""
    target = (SHOTS if os.environ.get("HRB_UPDATE_SCREENSHOTS") == "1" else root) / name
    page.screenshot(path=str(target))
    return target


RUN_TIMEOUT_S = 900
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front


def open_notebook(page, lab, name: str):
    """Open *name* in JupyterLab and wait until its kernel (the tool env's) is connected and idle."""
    page.goto(f"{lab['url']}lab/tree/{name}?reset&token={lab['token']}")  # reset: no other notebook restored
    page.locator(f"{PANEL} .jp-Cell").first.wait_for(timeout=60_000)
    wait_kernel_idle(page)


def wait_kernel_idle(page):
    page.get_by_text("Python 3 (hubrunbook tool env) | Idle").wait_for(timeout=90_000)


def run_all(page, timeout_s: float = RUN_TIMEOUT_S) -> float:
    """Run > Run All Cells; wait until the kernel is idle with every code cell run or one failed. Returns seconds."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    t0 = time.monotonic()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('PANEL .jp-CodeCell .jp-InputPrompt')];
            const busy = prompts.some(p => p.textContent.includes('*'));
            const failed = document.querySelector('PANEL .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
            const last = prompts[prompts.length - 1];
            return !busy && (failed || (last && /\\[\\d+\\]/.test(last.textContent)));
        }""".replace("PANEL", PANEL), timeout=timeout_s * 1000, polling=500)
    return time.monotonic() - t0


def rows(page, scope: str = PANEL) -> list[tuple[str, str]]:
    """(step, status) of every rendered step row outside the summary."""
    return [(r.get_attribute("data-step"), r.get_attribute("data-status"))
            for r in page.locator(f"{scope} .jp-OutputArea-output .hrb-step").all()]


def summary(page):
    s = page.locator(f"{PANEL} .hrb-summary").last
    return s.get_attribute("data-ok"), s.inner_text()


def error_text(page) -> str:
    """The first error shown (JupyterLab renders an error as stderr text), or ''."""
    texts = page.locator(f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    errors = [t for t in texts if t.startswith("✘ ") or "Traceback" in t or "Error" in t]
    return errors[0] if errors else ""


def test_lab_is_loopback_token_only_with_the_tool_env_kernel(lab):
    assert requests.get(f"{lab['url']}api/kernelspecs", timeout=5).status_code == 403  # no token, no entry
    specs = requests.get(f"{lab['url']}api/kernelspecs", headers={"Authorization": f"token {lab['token']}"},
                         timeout=5).json()
    assert list(specs["kernelspecs"]) == ["python3"]
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == sys.executable  # the .venv's, imports hubrunbook
    assert lab["token"] not in lab["printed"]  # stdout is not a terminal here: the URL without the token
    oct_mode = oct(lab["token_file"].stat().st_mode & 0o777)
    assert oct_mode == "0o600" and oct(lab["token_file"].parent.stat().st_mode & 0o777) == "0o700"
    for pid in [lab["pid"], *[int(p) for p in os.popen(f"pgrep -P {lab['pid']}").read().split()]]:
        assert lab["token"] not in Path(f"/proc/{pid}/cmdline").read_text()
        assert lab["token"] not in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    listening = os.popen("ss -ltnH").read()
    port = lab["url"].rstrip("/").rsplit(":", 1)[1]
    assert re.search(rf"127\.0\.0\.1:{port}\b", listening) and not re.search(rf"(0\.0\.0\.0|\*|\[::\]):{port}\b", listening)


def test_install_cold_then_converged_in_the_browser(lab, page):
    open_notebook(page, lab, "install.ipynb")
    cold = run_all(page)
    assert not error_text(page), error_text(page)
    steps = rows(page)
    names = [s for s, _ in steps]
    assert names[:5] == ["check_preflight", "ensure_node", "ensure_proxy", "ensure_hub_env", "check_hub_starts"]
    assert dict(steps[:5])["ensure_hub_env"] == "changed" and dict(steps[:5])["check_hub_starts"] == "ok"
    ok, text = summary(page)
    assert ok == "true" and text.startswith("✔ install: OK — 5 steps"), text
    page.locator(f"{PANEL} .hrb-summary").last.scroll_into_view_if_needed()
    shot(page, "lab-install.png", lab["root"].parent)

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel and Clear Outputs of All Cells…$")).click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(f"{PANEL} .hrb-step").first.wait_for(state="detached", timeout=30_000)
    wait_kernel_idle(page)
    converged = run_all(page)
    assert not error_text(page), error_text(page)
    statuses = dict(rows(page)[:5])
    assert all(statuses[s] == "unchanged" for s in ("ensure_node", "ensure_proxy", "ensure_hub_env")), statuses
    ok, text = summary(page)
    assert ok == "true", text
    print(f"\nRun All of install.ipynb in JupyterLab (chromium): cold {cold:.1f} s, converged {converged:.1f} s",
          file=sys.stderr)


def test_troubleshoot_read_only_shows_findings_and_a_failed_summary(lab, page):
    """install left a hub env but no config and no running hub: troubleshoot names that and fails, cause first."""
    before = sorted(p.name for p in Path(lab["params"]["prefix"]).iterdir())
    open_notebook(page, lab, "troubleshoot.ipynb")
    seconds = run_all(page)
    statuses = dict(rows(page))
    assert statuses.get("repair_deployment") == "would change", statuses  # apply_fixes false: nothing repaired
    assert statuses.get("check_deployment") == "failed", statuses
    ok, text = summary(page)
    assert ok == "false" and "troubleshoot: FAILED" in text
    err = error_text(page)
    assert err.startswith("✘ troubleshoot failed (VerificationError)\ncause: failed step(s): check_deployment\n"
                          "next:  each failed row above says why"), err
    assert err.index("next:") < err.index("traceback")
    findings = page.locator(f"{PANEL} .jp-OutputArea-output").all_inner_texts()
    assert any("config" in t.lower() for t in findings)
    assert sorted(p.name for p in Path(lab["params"]["prefix"]).iterdir()) == before  # read-only: nothing new
    page.locator(f"{PANEL} .hrb-summary").last.scroll_into_view_if_needed()
    shot(page, "lab-troubleshoot.png", lab["root"].parent)
    print(f"\nRun All of troubleshoot.ipynb in JupyterLab (chromium): {seconds:.1f} s", file=sys.stderr)


def test_missing_secret_prompt_is_hidden_and_never_saved(lab, page):
    var = f"HRB_LAB_SECRET_{os.getpid()}"
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "ask", "metadata": {}, "outputs": [],
                     "source": "from hubrunbook.core import secretref\n"
                               f"value = secretref.resolve('env:{var}', 'oauth_client_secret')\n"
                               "print('got', len(value), 'characters:', secretref.mask(value))"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = lab["root"] / "secret.ipynb"
    path.write_text(json.dumps(nb))
    open_notebook(page, lab, "secret.ipynb")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    box = page.locator(".jp-Stdin-input")
    box.wait_for(timeout=60_000)
    assert box.get_attribute("type") == "password"
    assert "environment variable " + var + " is not set" in page.locator(".jp-Stdin-prompt").inner_text()
    secret = f"typed-{os.getpid()}-Zq9"
    box.fill(secret)
    box.press("Enter")
    page.get_by_text(f"got {len(secret)} characters: ********").wait_for(timeout=30_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Save Notebook$")).click()
    deadline = time.monotonic() + 30
    while '"got ' not in (saved := path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert '"got ' in saved and secret not in saved  # the answer never reaches the notebook file
    assert secret not in page.content()
