"""Every parameter a runbook step (or a troubleshoot repair) reads is declared for it in hubrunbook.runbooks.STEPS.

The reads are found statically (tests/unit/param_reads.py): ``params.<field>`` and its aliases, followed through
every call into the library, Params' properties mapped to the fields they read. A read that is not declared means an
interactive run of the notebook uses the model default for it (the parameters cell derives from the declarations).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from param_reads import Library  # tests/unit/param_reads.py (pytest puts this directory on sys.path)

from hubrunbook.runbooks import FIELD_ORDER, RUNBOOKS, STEPS, reads_of

LIB = Path(__file__).resolve().parents[2] / "lib"


@pytest.fixture(scope="module")
def library() -> Library:
    return Library(LIB, "hubrunbook", "hubrunbook.core.params.Params")


def _short(q: str) -> str:
    return q.removeprefix("hubrunbook.")


def undeclared_reads(lib: Library, step: str, callables: list[str], declared: set[str]) -> list[str]:
    """One line per parameter *step* reads but does not declare: the parameter, the call path, where it is read."""
    return [f"step {step} reads {name!r}, undeclared: {' → '.join(_short(q) for q in path)} reads it at "
            f"{read.file}:{read.line}"
            for name, (path, read) in sorted(lib.reads_of(callables).items()) if name not in declared]


@pytest.mark.parametrize("name", list(STEPS))
def test_step_declares_every_parameter_it_reads(library, name):
    step = STEPS[name]
    problems = undeclared_reads(library, name, list(step.callables), set(reads_of(name)))
    inherited = {n for other in step.reruns for n in reads_of(other)}
    actual = library.reads_of(list(step.callables))
    wanted = " ".join(n for n in FIELD_ORDER if n in actual and n not in inherited)
    assert not problems, (f"add them to its reads in lib/hubrunbook/runbooks.py (all it reads: {wanted!r}):\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize("name", list(STEPS))
def test_step_reads_what_it_declares(library, name):
    step = STEPS[name]
    actual = library.reads_of(list(step.callables))
    extra = [n for n in step.reads if n not in actual]
    assert not extra, f"step {name} declares {extra} but never reads them: remove them from its reads"
    reached = {q for _, u in library.reach(list(step.callables)) for q in [u.qualname]}
    for other in step.reruns:
        target = STEPS[other].callables[0]
        assert target in reached, f"step {name} declares it runs {other} again, but never calls {_short(target)}"
        again = [n for n in step.reads if n in reads_of(other)]
        assert not again, f"step {name} declares {again}, which it reads through {other}: declare them only there"


@pytest.mark.parametrize("name", list(STEPS))
def test_step_reads_nothing_the_analysis_cannot_name(library, name):
    bad = [f"{' → '.join(_short(q) for q in path)}: {r.name} at {r.file}:{r.line}"
           for path, r in library.unresolved_of(list(STEPS[name].callables))]
    assert not bad, "reads the analysis cannot resolve (use a literal name):\n  " + "\n  ".join(bad)


def test_every_catalog_check_and_repair_is_reached_from_troubleshoot_steps(library):
    """The scan reaches every check, repair_deployment every repair: so their reads are troubleshoot's parameters."""
    import hubrunbook.troubleshoot.checks  # noqa: F401  (importing it registers every check)
    from hubrunbook.troubleshoot.catalog import CATALOG

    scan = {u.qualname for _, u in library.reach(list(STEPS["scan_deployment"].callables))}
    repair = {u.qualname for _, u in library.reach(list(STEPS["repair_deployment"].callables))}
    qual = lambda f: f"{f.__module__}.{f.__qualname__}"  # noqa: E731
    assert CATALOG
    missing = [f"{c.id}: detect {qual(c.detect)} not reached from scan_deployment" for c in CATALOG
               if qual(c.detect) not in scan]
    missing += [f"{c.id}: repair {qual(c.repair)} not reached from repair_deployment" for c in CATALOG
                if c.repair and qual(c.repair) not in repair]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("rb", RUNBOOKS, ids=lambda rb: rb.name)
def test_every_parameter_of_a_runbook_is_read_by_one_of_its_steps(rb):
    read = {n for s in rb.steps for n in reads_of(s)}
    dead = [n for n in rb.own if n not in read]
    assert not dead, f"{rb.name} introduces {dead} but none of its steps reads them"


# the analysis itself, on a synthetic package: it finds reads through aliases, properties, getattr and calls, and
# the comparison names the step, the parameter and the call path

SYNTHETIC = {
    "__init__.py": "",
    "core/__init__.py": "",
    "core/params.py": """
        from pydantic import BaseModel

        class Params(BaseModel):
            prefix: str = "/opt/x"
            port: int = 8000
            secret_ref: str = ""
            timeout: int = 10

            @property
            def url(self):
                return f"http://127.0.0.1:{self.port}"
        """,
    "helpers.py": """
        def write_url(p, path):
            path.write_text(p.url)

        def wait(ctx):
            q = ctx.params
            return q.timeout
        """,
    "steps.py": """
        from pkg import helpers
        from pkg.helpers import wait

        def ensure_thing(params, *, dry_run=False):
            root = params.prefix
            helpers.write_url(params, root)
            return wait(object())

        def check_names(params):
            return [getattr(params, name) for name in ("prefix", "secret_ref")]

        def check_dynamic(params, key):
            return getattr(params, key)
        """,
}


@pytest.fixture
def synthetic(tmp_path) -> Library:
    for rel, text in SYNTHETIC.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return Library(tmp_path, "pkg", "pkg.core.params.Params")


def test_analysis_follows_calls_aliases_and_properties(synthetic):
    found = synthetic.reads_of(["pkg.steps.ensure_thing"])
    assert set(found) == {"prefix", "port", "timeout"}
    assert found["port"][0] == ["pkg.steps.ensure_thing", "pkg.helpers.write_url", "pkg.core.params.Params.url"]
    assert found["timeout"][0] == ["pkg.steps.ensure_thing", "pkg.helpers.wait"]
    assert set(synthetic.reads_of(["pkg.steps.check_names"])) == {"prefix", "secret_ref"}


def test_an_undeclared_read_fails_naming_step_parameter_and_path(synthetic):
    problems = undeclared_reads(synthetic, "ensure_thing", ["pkg.steps.ensure_thing"], {"prefix", "timeout"})
    where = synthetic.units["pkg.core.params.Params.url"].file
    assert problems == ["step ensure_thing reads 'port', undeclared: pkg.steps.ensure_thing → pkg.helpers.write_url → "
                        f"pkg.core.params.Params.url reads it at {where}:12"]
    assert not undeclared_reads(synthetic, "ensure_thing", ["pkg.steps.ensure_thing"], {"prefix", "timeout", "port"})


def test_a_computed_getattr_is_reported_not_guessed(synthetic):
    bad = synthetic.unresolved_of(["pkg.steps.check_dynamic"])
    assert [r.name for _, r in bad] == ["getattr(params, key)"]
