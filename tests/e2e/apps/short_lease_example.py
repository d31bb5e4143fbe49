"""examples/create_data_file.py with a 2 s lease, so that a killed worker's process is
taken over quickly (the CLI has no lease option; `App.lease_seconds` is the knob)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "create_data_file.py"

if "create_data_file" in sys.modules:
    _module = sys.modules["create_data_file"]
else:
    _spec = importlib.util.spec_from_file_location("create_data_file", _EXAMPLE)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["create_data_file"] = _module
    _spec.loader.exec_module(_module)

app = _module.app
app.lease_seconds = 2.0
