"""The chart's own check: our values merged over the chart's defaults (values.yaml) against its values.schema.yaml.

Helm merges a user's values over the chart's defaults (maps key by key, anything else replaced) and validates the
result against the chart's JSON schema; :func:`merge` and :func:`schema_errors` do the same, before anything is
applied. The schema is read with the library's one YAML reader (``core.params.load_yaml``) and checked with
jsonschema, in the draft the schema names.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import load_yaml


@dataclass(frozen=True)
class Chart:
    """The chart's schema and default values, and where they were read from."""

    schema: dict
    defaults: dict
    schema_path: Path
    defaults_path: Path


def load_chart(schema_path: str | Path) -> Chart:
    """Read values.schema.yaml and the values.yaml beside it; ParameterError naming k8s_schema_path when absent."""
    schema_path = Path(schema_path)
    defaults_path = schema_path.with_name("values.yaml")
    for path, what in ((schema_path, "the chart's values.schema.yaml"), (defaults_path, "the chart's values.yaml")):
        if not path.is_file():
            raise ParameterError(f"k8s_schema_path: {path} ({what}) does not exist; `helm pull jupyterhub/jupyterhub "
                                 "--version <k8s_chart_version> --untar` gives both in jupyterhub/")
    return Chart(load_yaml(schema_path, "the chart's values.schema.yaml"),
                 load_yaml(defaults_path, "the chart's values.yaml"), schema_path, defaults_path)


def merge(base: dict, over: dict) -> dict:
    """Helm's merge of values: *over* wins; maps are merged key by key (a copy: neither argument changes)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(values: dict, chart: Chart) -> list[str]:
    """Every place where *values* merged over the chart's defaults breaks the chart's schema ('' when none)."""
    from jsonschema.validators import validator_for

    cls = validator_for(chart.schema)
    cls.check_schema(chart.schema)
    merged = merge(chart.defaults, values)
    errors = sorted(cls(chart.schema).iter_errors(merged), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in errors]
