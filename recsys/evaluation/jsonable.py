"""Reports as strict JSON: undefined metrics (NaN) become null, which every JSON parser reads."""
from __future__ import annotations

import json
import math

import numpy as np


def _strict(value):
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def json_text(report: dict) -> str:
    return json.dumps(_strict(report), indent=2, allow_nan=False) + "\n"
