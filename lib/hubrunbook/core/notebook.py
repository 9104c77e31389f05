"""Glue for runbook notebooks: collect the parameters a kernel holds and validate them.

Which globals are parameters? In a kernel (the namespace has IPython's ``In``, the source of every cell run so
far), a name is a parameter when it was assigned by a *parameter cell*:

- the ``parameters`` cell, or any cell shaped like it: only plain assignments to names (``port = 8000``,
  ``prefix: str = '/opt/x'``, comments) with at least one known parameter among them;
- papermill's injected cell (it starts with the line ``# Parameters``), whatever names it assigns.

So a misspelt name beside real parameters (in the parameters cell or papermill's injection) is still an error
with a "did you mean", while an operator's scratch cell (``x = 3``, or anything that is not only plain
assignments) adds no parameter. Outside a kernel (a plain dict), or in a kernel that keeps no history (nbval), every
plain-valued public name counts.
"""
from __future__ import annotations

import ast
import types
from typing import Any

from hubrunbook.core.params import Params, build_params

# Names IPython puts into the user namespace; everything else plain is a parameter.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_PLAIN = (str, int, float, bool, list, dict, tuple, type(None))
PAPERMILL_HEADER = "# Parameters"  # the first line of the cell papermill injects


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell assigns when it is only plain assignments to names; None for any other cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names.append(node.target.id)
        else:
            return None
    return names


def parameter_names(history: list[str]) -> set[str]:
    """The names assigned by the parameter cells among *history* (the sources of the cells run, in order)."""
    known = set(Params.model_fields)
    out: set[str] = set()
    for source in history:
        names = _assigned_names(source)
        if not names:
            continue
        if source.lstrip().startswith(PAPERMILL_HEADER + "\n") or known.intersection(names):
            out.update(names)
    return out


def _plain(name: str, value: Any) -> bool:
    if name.startswith("_") or name in _IPYTHON_NAMES:
        return False
    return isinstance(value, _PLAIN) and not isinstance(value, (types.ModuleType, types.FunctionType, type))


def collect_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters *namespace* holds: in a kernel, the plain names its parameter cells assigned;
    otherwise every plain-valued public name."""
    history = namespace.get("In")
    # a kernel that keeps no history (nbval executes with store_history=False: In stays ['']) cannot tell parameter
    # cells from others: there every plain-valued public name counts, as outside a kernel. Without this, nbval ran
    # every runbook with the model defaults (prefix /opt/hubrunbook), whatever papermill had injected.
    kept = isinstance(history, list) and any(isinstance(s, str) and s.strip() for s in history)
    wanted = parameter_names(history) if kept else None
    return {name: value for name, value in namespace.items()
            if _plain(name, value) and (wanted is None or name in wanted)}


def load_params(namespace: dict[str, Any]) -> Params:
    """Validate the notebook's parameters (call with ``globals()``); raises ParameterError. Read-only."""
    return build_params(collect_parameters(namespace))
