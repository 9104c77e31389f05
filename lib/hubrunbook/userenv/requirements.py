"""What goes into the user env: the parameter user_packages and the file user_requirements (a requirements.txt, or a
conda environment.yml whose pip-installable dependencies are taken; what only conda can install is refused). Read-only.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import check_requirement

# channels whose packages mostly exist on PyPI under the same names; any other channel (bioconda, nvidia, pytorch, …)
# serves packages only conda can install
PYPI_LIKE_CHANNELS = ("conda-forge", "defaults", "anaconda", "main", "nodefaults")
CONDA_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*(?P<op>==|>=|<=|!=|=|>|<|~=)?\s*(?P<rest>.*)$")
# conda packages that are never Python distributions on PyPI: refused with this reason
CONDA_ONLY = {"r-base": "R", "r": "R", "cudatoolkit": "CUDA from conda", "cuda": "CUDA from conda", "nodejs": "Node.js",
              "gcc": "a compiler", "gxx": "a compiler", "compilers": "compilers", "mkl": "Intel MKL from conda",
              "openjdk": "Java", "julia": "Julia"}


def requirements_file(path: str) -> tuple[list[str], list[str]]:
    """(requirements, notes) from *path*: a conda environment file (.yml/.yaml) or a requirements file. Raises
    ParameterError naming the line or dependency that cannot be used."""
    from hubrunbook.host.system import untrusted_reason

    p = Path(path)
    why = untrusted_reason(p)
    if why:
        raise ParameterError(f"user_requirements {path}: {why}; root reads only files no other user can change")
    try:
        text = p.read_text()
    except OSError as exc:
        raise ParameterError(f"user_requirements {path} cannot be read: {exc.strerror}") from None
    if p.suffix in (".yml", ".yaml"):
        return environment_yml(text, path)
    return requirements_txt(text, path), []


def requirements_txt(text: str, path: str = "requirements.txt") -> list[str]:
    """The requirement lines of a requirements file; options (-r, -e, --index-url, …) and URLs are refused."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(check_requirement(line, f"{path} line {n}"))
        except ValueError as exc:
            raise ParameterError(f"user_requirements: {exc}") from None
    return out


def environment_yml(text: str, path: str = "environment.yml") -> tuple[list[str], list[str]]:
    """(requirements, notes) from a conda environment file: its `pip:` list, and conda specs that name PyPI packages
    (``numpy=1.26`` → ``numpy==1.26.*``). Refuses other channels, ``channel::pkg``, build strings and conda-only
    packages, naming them; python and pip are skipped with a note (the user env's Python is user_python)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"user_requirements {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        raise ParameterError(f"user_requirements {path}: a conda environment file is a mapping with a "
                             "'dependencies:' list")
    problems, reqs, notes = [], [], []
    other = [c for c in data.get("channels") or [] if str(c) not in PYPI_LIKE_CHANNELS]
    if other:
        problems.append(f"channels {', '.join(map(str, other))}: their packages are conda-only; uv installs from PyPI")
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            for spec in dep["pip"]:
                try:
                    reqs.append(check_requirement(str(spec), f"{path} pip entry"))
                except ValueError as exc:
                    problems.append(str(exc))
            continue
        if not isinstance(dep, str):
            problems.append(f"dependency {dep!r} is neither a conda spec nor a 'pip:' list")
            continue
        spec = dep.strip()
        if "::" in spec:
            problems.append(f"{spec!r} names a conda channel (channel::package): conda-only")
            continue
        words = spec.split()
        if len(words) == 2:  # conda's "name version"
            spec_ = f"{words[0]}={words[1]}"
        elif len(words) > 2:
            problems.append(f"{spec!r} pins a conda build string: conda-only")
            continue
        else:
            spec_ = spec
        m = CONDA_SPEC_RE.match(spec_)
        if not m:
            problems.append(f"{spec!r} is not a conda package spec uv could translate")
            continue
        name, op, rest = m["name"], m["op"], m["rest"].strip()
        low = name.lower()
        if low in ("python", "pip"):
            notes.append(f"{spec}: skipped (the user env's Python is user_python; uv needs no pip)")
            continue
        if low in CONDA_ONLY:
            problems.append(f"{spec!r} is {CONDA_ONLY[low]}, not a Python package on PyPI: conda-only")
            continue
        if op == "=":  # conda's fuzzy pin: 1.26 means 1.26.*
            version, _, build = rest.partition("=")
            if build:
                problems.append(f"{spec!r} pins a conda build string: conda-only")
                continue
            translated = f"{name}=={version}" if version.endswith("*") else f"{name}=={version}.*"
        else:
            translated = f"{name}{op or ''}{rest}"
        try:
            reqs.append(check_requirement(translated, f"{path} dependency {spec!r}"))
        except ValueError as exc:
            problems.append(str(exc))
        if translated != spec:
            notes.append(f"{spec} → {translated}")
    if problems:
        raise ParameterError(
            f"user_requirements {path} asks for what uv cannot install from PyPI; nothing was changed:\n  - "
            + "\n  - ".join(problems)
            + "\nFix: move these to the pip: list under their PyPI names, or drop them (a conda-only stack needs a "
              "conda env, which hubrunbook does not build)")
    return reqs, notes
