"""What an operator sees in JupyterLab: which globals are parameters, step rows, failed steps, secret prompts.

The kernel tests start the tool env's own ipykernel and talk to it as JupyterLab (allow_stdin) and papermill
(no stdin) do.
"""
import os
import queue

import pytest

from hubrunbook.core import secretref
from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.notebook import collect_parameters, load_params, parameter_names
from hubrunbook.core.params import build_params
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, Run, StepResult, Summary

PARAMS_CELL = "prefix: str = '/srv/hrb-x'  # where\nport: int = 8000  # public port\n"


def ns_of(*cells, **values):
    return {"In": ["", *cells], "Out": {}, **values}


def test_scratch_variable_is_not_a_parameter():
    ns = ns_of(PARAMS_CELL, "x = 3", "y = [1, 2]\nprint(y)", prefix="/srv/hrb-x", port=8000, x=3, y=[1, 2])
    assert collect_parameters(ns) == {"prefix": "/srv/hrb-x", "port": 8000}
    assert load_params(ns).prefix == "/srv/hrb-x"


def test_misspelt_name_in_the_parameters_cell_is_caught():
    ns = ns_of(PARAMS_CELL + "prot = 9000\n", prefix="/srv/hrb-x", port=8000, prot=9000)
    with pytest.raises(ParameterError, match="prot.*did you mean.*port"):
        load_params(ns)


def test_misspelt_name_injected_by_papermill_is_caught_even_alone():
    injected = "# Parameters\nprot = 9000\n"
    ns = ns_of(PARAMS_CELL, injected, prefix="/srv/hrb-x", port=8000, prot=9000)
    assert parameter_names(ns["In"]) == {"prefix", "port", "prot"}
    with pytest.raises(ParameterError, match="prot"):
        load_params(ns)


def test_operator_override_in_a_cell_of_its_own_counts():
    ns = ns_of(PARAMS_CELL, "port = 9001", prefix="/srv/hrb-x", port=9001)
    assert load_params(ns).port == 9001


def test_a_deleted_parameter_name_is_not_collected():
    ns = ns_of(PARAMS_CELL + "prot = 1\n", prefix="/srv/hrb-x", port=8000)  # `del prot` ran afterwards
    assert collect_parameters(ns) == {"prefix": "/srv/hrb-x", "port": 8000}


def test_nbval_keeps_no_history_and_the_injected_parameters_still_count(tmp_path):
    """nbval runs cells with store_history=False, so ``In`` stays empty: the sandbox parameters papermill injected must
    still be the parameters (once they silently fell back to the defaults and nbval deployed to /opt/hubrunbook)."""
    import subprocess
    import sys

    import nbformat

    cells = [nbformat.v4.new_code_cell(PARAMS_CELL), nbformat.v4.new_code_cell("# Parameters\nprefix = '/var/tmp/hrb-nbv-x'\n"),
             nbformat.v4.new_code_cell("from hubrunbook.core.notebook import load_params\nprint(load_params(globals()).prefix)")]
    for n, cell in enumerate(cells, 1):
        cell.execution_count = n
    cells[-1].metadata["tags"] = ["nbval-check-output"]
    cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="/var/tmp/hrb-nbv-x\n")]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                        "language": "python"}})
    nbformat.write(nb, tmp_path / "probe.ipynb")
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                          "-q", str(tmp_path / "probe.ipynb")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]


def test_a_kernel_without_history_still_sees_the_injected_parameters():
    """nbval executes cells with store_history=False: `In` never lists the parameters cell or papermill's injection.
    Ignoring them ran every nbval copy on the default prefix (/opt/hubrunbook) instead of its sandbox."""
    ns = ns_of(prefix="/srv/hrb-sandbox", port=9001)  # In == [""]
    assert load_params(ns).prefix == "/srv/hrb-sandbox" and load_params(ns).port == 9001
    with pytest.raises(ParameterError, match="portt"):
        load_params(ns_of(prefix="/srv/hrb-sandbox", portt=1))


def test_plain_dict_outside_a_kernel_counts_every_plain_name():
    with pytest.raises(ParameterError, match="portt"):
        load_params({"portt": 1})


def test_step_row_html_has_status_colour_and_text_plain_is_unchanged():
    r = StepResult("ensure_x", CHANGED, "did <it>", rows=[("a", "ok", "b")])
    page = r._repr_html_()
    assert "data-step='ensure_x'" in page and "data-status='changed'" in page and "#1565c0" in page
    assert "did &lt;it&gt;" in page and "<td style='text-align:left;color:#2e7d32;font-weight:bold'>ok</td>" in page
    assert repr(r) == "[changed] ensure_x: did <it>\ncheck  result  detail\n-----  ------  ------\na      ok      b"


def test_summary_html_is_one_row_per_step():
    s = Summary("t", [StepResult("check_a", OK, "fine"), StepResult("ensure_b", FAILED, "broken")])
    page = s._repr_html_()
    assert "data-ok='false'" in page and page.count("class='hrb-step'") == 2 and "#c62828" in page
    assert repr(s).startswith("t: FAILED — 2 steps (1 failed, 1 ok)")


def test_failed_step_renders_cause_and_next_action_before_traceback(tmp_path):
    run = Run("t", build_params({"prefix": str(tmp_path / "p")}))

    def check_machine(p):
        raise PreflightError("port 8000 is held by nginx (pid 42)\nstop it or change port")

    with pytest.raises(PreflightError) as info:
        try:
            run(check_machine)
        finally:
            run.release()
    assert str(info.value).startswith("step check_machine failed: port 8000")  # papermill's evalue, as before
    text = "\n".join(info.value._render_traceback_())
    plain = text.replace("\x1b[31m", "").replace("\x1b[1m", "").replace("\x1b[2m", "").replace("\x1b[0m", "")
    assert plain.splitlines()[0] == "✘ step check_machine failed (PreflightError)"
    assert plain.splitlines()[1] == "cause: port 8000 is held by nginx (pid 42)"
    assert plain.index("next:  fix the machine") < plain.index("traceback (for debugging") < plain.index("File ")


def test_failed_summary_renders_the_run_and_its_failed_steps(tmp_path):
    from hubrunbook.core.errors import VerificationError

    run = Run("t", build_params({"prefix": str(tmp_path / "p")}))
    run(lambda p: StepResult("check_a", FAILED, "broken"))
    with pytest.raises(VerificationError, match="^t failed: check_a$") as info:
        run.summary()
    lines = info.value._render_traceback_()
    assert "t failed (VerificationError)" in lines[0] and lines[1].endswith("failed step(s): check_a")
    assert "each failed row above says why" in lines[2]


# --- a real kernel, as JupyterLab and papermill drive it --------------------------------------------------
@pytest.fixture
def kernel():
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if not k.startswith("HRB_LAB_T_")}
    km, kc = start_new_kernel(kernel_name="python3", env=env)  # "python" in its argv is this interpreter
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc, code, *, allow_stdin=False, answer=None):
    """Run *code*; answer an input request with *answer*. Returns (status, text of outputs, prompts seen)."""
    msg_id = kc.execute(code, allow_stdin=allow_stdin)
    out, prompts, status = [], [], "ok"
    while True:
        if allow_stdin:
            try:
                req = kc.get_stdin_msg(timeout=0.05)
                prompts.append((req["content"]["prompt"], req["content"]["password"]))
                kc.input(answer)
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        c = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(c["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(c["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            out.append("\n".join(c["traceback"]))
            status = "error"
        elif msg["msg_type"] == "status" and c["execution_state"] == "idle":
            break
    return status, "".join(out), prompts


def test_missing_env_secret_is_asked_for_hidden_only_interactively(kernel):
    code = ("from hubrunbook.core import secretref\n"
            "v = secretref.resolve('env:HRB_LAB_T_SECRET', 'oauth_client_secret')\n"
            "print(len(v), secretref.mask('is ' + v), 'HRB_LAB_T_SECRET' in __import__('os').environ)")
    status, out, prompts = execute(kernel, code)  # papermill's way: no stdin
    assert status == "error" and "environment variable HRB_LAB_T_SECRET is not set or empty" in out and not prompts, out
    status, out, prompts = execute(kernel, code, allow_stdin=True, answer="s3cret-typed-4")
    assert status == "ok", out
    assert prompts == [("oauth_client_secret (environment variable HRB_LAB_T_SECRET is not set): ", True)]
    assert out.strip() == "14 is ******** False"  # masked, never put into the environment children inherit
    status, out, prompts = execute(kernel, code, allow_stdin=True, answer="other")  # asked once per kernel
    assert status == "ok" and not prompts and out.startswith("14 ")


def test_load_params_in_a_kernel_ignores_scratch_and_catches_typos(kernel):
    assert execute(kernel, PARAMS_CELL)[0] == "ok"
    assert execute(kernel, "x = 3\nscratch = {'a': 1}")[0] == "ok"
    load = "from hubrunbook.core.notebook import load_params\nprint(load_params(globals()).port)"
    status, out, _ = execute(kernel, load)
    assert status == "ok" and out.strip() == "8000", out
    assert execute(kernel, "# Parameters\nprot = 9000\n")[0] == "ok"  # papermill's injected cell
    status, out, _ = execute(kernel, load)
    assert status == "error" and "✘ parameters refused (ParameterError)" in out and "prot" in out and "next:" in out

