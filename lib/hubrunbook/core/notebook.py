"""Glue for runbook notebooks: collect the parameters a kernel holds and validate them."""
from __future__ import annotations

import types
from typing import Any

from hubrunbook.core.params import Params, build_params

# Names IPython puts into the user namespace; everything else plain is a parameter.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_PLAIN = (str, int, float, bool, list, dict, tuple, type(None))


def collect_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """Return the plain-valued public names of *namespace*: the parameters cell plus papermill's injection."""
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, type)) or not isinstance(value, _PLAIN):
            continue
        out[name] = value
    return out


def load_params(namespace: dict[str, Any]) -> Params:
    """Validate the notebook's parameters (call with ``globals()``); raises ParameterError. Read-only."""
    return build_params(collect_parameters(namespace))
