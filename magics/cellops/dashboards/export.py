"""The drift dashboard as one static HTML file (under `reports/` by default): the store read
once into a snapshot, laid out as the page `cellops dashboard --static` serves (every model,
a model and a column chooser in plain HTML/JS, no kernel, no CDN)."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import CellopsUsageError

DEFAULT_EXPORT = Path("reports") / "drift_dashboard.html"


def export_path(settings: Settings, output: Path | None = None) -> Path:
    """Where the export goes: `output` (relative to the project) or `reports/...html`."""
    target = Path(output) if output else settings.root / DEFAULT_EXPORT
    if not target.is_absolute():
        target = settings.root / target
    if target.suffix.lower() not in (".html", ".htm"):
        raise CellopsUsageError(f"the export is an HTML file: -o {target.with_suffix('.html')}")
    return target


def export_dashboard(
    settings: Settings, output: Path | None = None, model: str | None = None
) -> Path:
    """Read the store once and write the dashboard as one static HTML file, `model` shown
    first."""
    from .._fs import atomic_write_text
    from .data import open_dashboard_store
    from .page import static_page
    from .snapshot import build_snapshot

    target = export_path(settings, output)
    snapshot = build_snapshot(open_dashboard_store(settings))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, static_page(snapshot, model))
    return target
