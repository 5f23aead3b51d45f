"""MLflow's size limits on what cellops records, in one place.

MLflow refuses a param value over 6000 characters and, on SQL stores, a tag value over 8000
(older servers: 5000); cellops cuts longer text to these lengths before it writes, so a long
value is shortened, never the reason a run fails to record.
"""

from __future__ import annotations

from typing import Any

MAX_PARAM = 6000
MAX_TAG = 5000  # what every MLflow version still in use accepts


def tag_text(value: Any) -> str:
    """`value` as a tag's text, within the limit."""
    return str(value)[:MAX_TAG]


def param_text(value: Any) -> str:
    """`value` as a param's text, within the limit."""
    return str(value)[:MAX_PARAM]
