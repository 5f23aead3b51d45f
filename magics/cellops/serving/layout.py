"""Where the prediction and feedback logs live and what their columns are called: the one
statement of the log's layout, shared by its writer (`log`, `feedback`) and its reader
(`traffic`), and light to import.

    <root>/model=<NAME>/date=<YYYY-MM-DD>/<file>.parquet             predictions
    <root>/_feedback/model=<NAME>/date=<YYYY-MM-DD>/<file>.parquet   labels that came later

The feedback folder starts with "_" so that `pandas.read_parquet(<root>)` (pyarrow skips names
starting with "." or "_") reads the predictions alone.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings

META_COLUMNS = (
    "request_id", "row", "timestamp", "version", "variant", "latency_ms", "status",
    "prediction", "probability",
)  # fmt: skip
PARTITION_COLUMNS = ("model", "date")
RESERVED = frozenset(META_COLUMNS + PARTITION_COLUMNS)
INPUT_PREFIX = "input."  # a feature named like a reserved column is logged as input.<name>
FEEDBACK_FOLDER = "_feedback"


def predictions_root(settings: Settings) -> Path:
    """Where the prediction and feedback logs of the project live."""
    return settings.serve.predictions_root or settings.state_dir / "predictions"


def model_folder(root: Path, model: str) -> Path:
    return root / f"model={model}"


def feature_column(name: str) -> str:
    """The log's column for input feature `name`."""
    return INPUT_PREFIX + name if name in RESERVED else name
