"""The Jupyter server extension: one `LabService` over the cellops core, and its routes."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int

from .handlers import handlers
from .service import LabService


class CellopsLabApp(ExtensionApp):
    """cellops beside the notebook: the REST API the JupyterLab panel reads."""

    name = "cellops_lab"
    load_other_extensions = True

    workers = Int(
        4,
        config=True,
        help="Threads that call MLflow and read files, off the server's event loop.",
    )

    def initialize_settings(self) -> None:
        self.service = LabService(self.serverapp.root_dir, max_workers=self.workers)
        self.settings["cellops_lab.service"] = self.service

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers(self.service))

    async def stop_extension(self) -> None:
        self.service.close()
