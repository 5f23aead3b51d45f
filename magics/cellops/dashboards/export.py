"""The drift dashboard as one static HTML file: the notebook run with nbclient, exported
without code or widgets (under `reports/` by default)."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import CellopsError, CellopsUsageError
from .server import EXPORT_TEMPLATE, TEMPLATE_ROOT, dashboard_notebook, kernel_environment

DEFAULT_EXPORT = Path("reports") / "drift_dashboard.html"


def export_dashboard(
    settings: Settings,
    output: Path | None = None,
    model: str | None = None,
    notebook: Path | None = None,
    timeout: float = 300,
) -> Path:
    """Execute the dashboard notebook and write its outputs as one static HTML file."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    from .._fs import atomic_write_text
    from .._process import environment

    path = dashboard_notebook(settings, notebook)
    target = Path(output) if output else settings.root / DEFAULT_EXPORT
    if not target.is_absolute():
        target = settings.root / target
    if target.suffix.lower() not in (".html", ".htm"):
        raise CellopsUsageError(f"the export is an HTML file: -o {target.with_suffix('.html')}")
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    try:
        with environment(**kernel_environment(settings, model)):
            client.execute()
    except CellExecutionError as exc:
        raise CellopsError(f"the dashboard notebook failed: {str(exc).splitlines()[-1]}") from None
    exporter = HTMLExporter(
        template_name=EXPORT_TEMPLATE,
        extra_template_basedirs=[str(TEMPLATE_ROOT / "nbconvert" / "templates")],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    atomic_write_text(target, body)
    return target
