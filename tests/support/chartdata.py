"""Where the tests find the Zero to JupyterHub chart data (values.schema.yaml, values.yaml) for kubernetes.ipynb's
schema validation: ``$HRB_Z2JH_DIR``, else ``<repo>/../shared/z2jh/`` (this workplace's copy; tests/system/pristine.py
copies it beside the checkout it clones into a pristine server). Where it is absent the validation is skipped, saying
so: the data is not part of the repository."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
Z2JH_DIR = Path(os.environ.get("HRB_Z2JH_DIR") or REPO.parent / "shared" / "z2jh")
FILES = ("values.schema.yaml", "values.yaml")


def chart_data_present() -> bool:
    return all((Z2JH_DIR / name).is_file() for name in FILES)
