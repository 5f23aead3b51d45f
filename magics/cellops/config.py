"""Where the project is and how it is configured.

The project root is the first folder, walking up from the notebook or working directory, that
holds `pyproject.toml` with `[tool.cellops]`, `cellops.toml`, `.dvc/` or `.git/`. Settings come
from `[tool.cellops]` (or `cellops.toml`), overridden by environment variables, overridden by
the keyword arguments a magic or CLI flag passes in.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STATE_DIR_NAME = ".cellops"


@dataclass(frozen=True)
class ServeSettings:
    """`cellops serve`, from `[tool.cellops.serve]` or CELLOPS_SERVE_<KEY> (see serve_settings).

    The alias is polled every `poll_seconds`; a request body over `max_body_bytes` is refused;
    the prediction log is flushed every `log_batch_rows` rows or `log_batch_seconds` (what a
    killed server can lose), and its files are rotated (made visible) at `log_rotate_bytes` or
    `log_rotate_seconds`; `predictions_root` defaults to .cellops/predictions."""

    poll_seconds: float = 2.0
    max_body_bytes: int = 10 * 2**20
    log_batch_rows: int = 1000
    log_batch_seconds: float = 1.0
    log_rotate_bytes: int = 64 * 2**20
    log_rotate_seconds: float = 60.0
    predictions_root: Path | None = None


@dataclass(frozen=True)
class Settings:
    root: Path
    tracking_uri: str
    artifact_root: Path
    mlflow_ui_url: str | None = None  # where links to MLflow's UI point (see store/links.py)
    # the dashboard (`cellops dashboard`): at most this many kernels at once (views beyond it
    # wait in line and see the shared data meanwhile), its data re-read at most once per
    # refresh interval, and a closed view's kernel shut down after this many idle seconds
    dashboard_max_kernels: int = 0  # 0: sized to the machine, see dashboard_kernel_bound
    dashboard_refresh_seconds: float = 30.0
    dashboard_cull_seconds: float = 60.0
    serve: ServeSettings = ServeSettings()  # `cellops serve` and its prediction log

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def objects_dir(self) -> Path:
        return self.state_dir / "objects"

    @property
    def steps_state_dir(self) -> Path:
        return self.state_dir / "steps"

    @property
    def uses_default_store(self) -> bool:
        return self.tracking_uri == default_tracking_uri(self.root)


def _tool_table(folder: Path) -> dict[str, Any] | None:
    """The cellops settings table declared in `folder`, or None when there is none."""
    standalone = folder / "cellops.toml"
    if standalone.is_file():
        with open(standalone, "rb") as fh:
            data = tomllib.load(fh)
        return data.get("tool", {}).get("cellops", data)
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            with open(pyproject, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError:
            return None
        table = data.get("tool", {}).get("cellops")
        if table is not None:
            return table
    return None


def find_project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The first folder at or above `start` that marks a cellops project; `start` if none."""
    here = Path(start or os.getcwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if _tool_table(folder) is not None:
            return folder
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return here


def default_tracking_uri(root: Path) -> str:
    return f"sqlite:///{root / STATE_DIR_NAME / 'mlflow.db'}"


def load_settings(start: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings for the project holding `start`: file, then environment, then `overrides`."""
    root = find_project_root(start)
    table = _tool_table(root) or {}
    tracking_uri = (
        overrides.get("tracking_uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or table.get("tracking_uri")
        or default_tracking_uri(root)
    )
    artifact_root = Path(
        overrides.get("artifact_root")
        or os.environ.get("CELLOPS_ARTIFACT_ROOT")
        or table.get("artifact_root")
        or root / STATE_DIR_NAME / "artifacts"
    )
    if not artifact_root.is_absolute():
        artifact_root = root / artifact_root
    ui_url = (
        overrides.get("mlflow_ui_url")
        or os.environ.get("CELLOPS_MLFLOW_UI_URL")
        or table.get("mlflow_ui_url")
        or None
    )
    dashboard = {
        key: _number(key, env, table, kind, default)
        for key, env, kind, default in _DASHBOARD_SETTINGS
        if not overrides.get(key)
    }
    dashboard.update({key: overrides[key] for key, *_ in _DASHBOARD_SETTINGS if overrides.get(key)})
    return Settings(
        root=root,
        tracking_uri=str(tracking_uri),
        artifact_root=artifact_root,
        mlflow_ui_url=str(ui_url) if ui_url else None,
        **dashboard,
        serve=serve_settings(root, table, overrides.get("serve")),
    )


# (setting in [tool.cellops], environment variable, type, default)
_DASHBOARD_SETTINGS = (
    ("dashboard_max_kernels", "CELLOPS_DASHBOARD_MAX_KERNELS", int, 0),
    ("dashboard_refresh_seconds", "CELLOPS_DASHBOARD_REFRESH", float, 30.0),
    ("dashboard_cull_seconds", "CELLOPS_DASHBOARD_CULL", float, 60.0),
)


def _number(key: str, env: str, table: dict[str, Any], kind: type, default: float) -> Any:
    """A dashboard setting from the environment, else `[tool.cellops]`, else its default; a
    value that is not a number >= 0 (>= 1 for the seconds) is a usage error naming its source."""
    from .errors import CellopsUsageError

    raw, source = os.environ.get(env), env
    if raw is None or raw == "":
        raw, source = table.get(key), f"{key} in [tool.cellops]"
    if raw is None:
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    lowest = 0 if kind is int else 1
    if value is None or value != value or value < lowest:  # value != value: NaN
        what = "a whole number >= 0 (0: sized to the machine)" if kind is int else "seconds >= 1"
        raise CellopsUsageError(f"{source} is {raw!r}: it takes {what}, e.g. {key} = {default}")
    return value


def dashboard_kernel_bound(settings: Settings) -> int:
    """The most dashboard kernels at once: the setting, else one per core this process may
    use, and no more than an eighth of the memory available allows at ~150 MB a kernel."""
    return settings.dashboard_max_kernels or machine_kernel_bound()


def machine_kernel_bound() -> int:
    """One dashboard kernel per core this process may use, within an eighth of the memory
    available at ~150 MB a kernel; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        available = 0
    by_memory = available // 8 // (150 * 2**20) if available else cores
    return max(1, min(cores, by_memory))


def serve_settings(
    root: Path, table: dict[str, Any], overrides: dict[str, Any] | None = None
) -> ServeSettings:
    """`[tool.cellops.serve]` overridden by CELLOPS_SERVE_<KEY> overridden by `overrides`; a
    value that is not a number > 0 is a usage error naming where it came from."""
    from dataclasses import fields

    from .errors import CellopsUsageError

    section = table.get("serve") or {}
    values: dict[str, Any] = {}
    for spec in fields(ServeSettings):
        key, env = spec.name, f"CELLOPS_SERVE_{spec.name.upper()}"
        raw, source = (overrides or {}).get(key), f"{key}="
        if raw is None:
            raw, source = os.environ.get(env) or None, env
        if raw is None:
            raw, source = section.get(key), f"{key} in [tool.cellops.serve]"
        if raw is None:
            continue
        if key == "predictions_root":
            path = Path(str(raw)).expanduser()
            values[key] = path if path.is_absolute() else root / path
            continue
        kind = int if isinstance(spec.default, int) else float
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or value != value or value <= 0:  # value != value: NaN
            raise CellopsUsageError(
                f"{source} is {raw!r}: it takes a number > 0, e.g. {key} = {spec.default}"
            )
        values[key] = value
    return ServeSettings(**values)
