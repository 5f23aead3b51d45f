"""The registry panel (`%cellops models`): versions, aliases, metrics, the last gate result,
and Promote / Roll back buttons that ask for confirmation, then call the same core functions
as `cellops promote` and `cellops rollback`."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..errors import CellopsError

COLUMNS = ("version", "aliases", "created", "by", "metrics", "last gate")


class RegistryPanel(widgets.VBox):
    def __init__(self, name: str | None = None, store: Any = None, **gate_options: Any):
        self._store = store
        self._gate_options = gate_options  # holdout=, label=, gate=: as promote() takes them
        self._pending: Callable[[], Any] | None = None
        self.model = widgets.Dropdown(description="model", options=[])
        self.version = widgets.Dropdown(description="version", options=[])
        self.table = widgets.GridBox(
            layout=widgets.Layout(grid_template_columns=f"repeat({len(COLUMNS)}, auto)")
        )
        self.gate = widgets.HTML()
        self.promote_button = widgets.Button(
            description="Promote", button_style="warning", icon="arrow-up",
            tooltip="Run the gate on this version; move @champion if it passes",
        )  # fmt: skip
        self.rollback_button = widgets.Button(
            description="Roll back", button_style="danger", icon="undo",
            tooltip="Put back the champion the current one replaced",
        )  # fmt: skip
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.question = widgets.HTML()
        self.confirm_button = widgets.Button(description="Yes", button_style="primary")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.HBox(
            [self.question, self.confirm_button, self.cancel_button],
            layout=widgets.Layout(display="none"),
        )
        self.status = widgets.HTML()
        self.mlflow = widgets.HTML()  # the version's page in MLflow's UI, or how to open it
        self.model.observe(self._on_model, names="value")
        self.version.observe(self._on_version, names="value")
        self.promote_button.on_click(self._ask_promote)
        self.rollback_button.on_click(self._ask_rollback)
        self.refresh_button.on_click(lambda _: self.refresh())
        self.confirm_button.on_click(self._confirm)
        self.cancel_button.on_click(self._cancel)
        super().__init__(
            [
                widgets.HBox([self.model, self.refresh_button]),
                self.table,
                widgets.HBox([self.version, self.promote_button, self.rollback_button]),
                self.confirm_box,
                self.status,
                self.gate,
                self.mlflow,
            ]
        )
        self.info: Any = None
        self.refresh(name)

    # -- reading ------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        from ..registry.store import open_store

        return self._store or open_store()

    def refresh(self, name: str | None = None) -> None:
        from ..registry.catalog import list_models

        try:
            names = [m.name for m in list_models(self.store)]
        except CellopsError as exc:
            self._say(str(exc), error=True)
            return
        wanted = name or self.model.value
        self.model.options = names
        if not names:
            self._say("no model is registered yet: cellops.register_model(model, name)")
            self._show(None)
            return
        if wanted in names:
            self.model.value = wanted
        self._show(self.model.value)

    def _on_model(self, change: dict) -> None:
        if change["new"]:
            self._show(change["new"])

    def _show(self, name: str | None) -> None:
        from ..registry.catalog import model_info

        self.info = model_info(self.store, name) if name else None
        versions = self.info.versions if self.info else []
        cells = [widgets.HTML(f"<b>{c}</b>") for c in COLUMNS]
        for v in versions:
            metrics = ", ".join(f"{k}={x:.4g}" for k, x in sorted(v.metrics.items()))
            for text in (f"v{v.version}", ", ".join(v.aliases), v.created, v.user, metrics,
                         v.gate_text()):  # fmt: skip
                cells.append(widgets.Label(text))
        self.table.children = cells
        options = [(f"v{v.version} {' '.join('@' + a for a in v.aliases)}", v.version)
                   for v in versions]  # fmt: skip
        self.version.options = options
        if self.info and self.info.challenger:
            self.version.value = self.info.challenger
        self.rollback_button.disabled = not (self.info and self.info.champion)
        self._on_version({"new": self.version.value})

    def _on_version(self, change: dict) -> None:
        self.mlflow.value = self._mlflow_html(change["new"])
        version = self._version_info(change["new"])
        gist = version.last_gate if version else None
        if not gist:
            self.gate.value = "<i>no gate result for this version yet</i>"
            return
        lines = [f"{gist.get('decision', '')} at {gist.get('at', '')} by {gist.get('by', '')}"]
        if gist.get("first_model"):
            lines.append("first model: judged on the absolute conditions only")
        for c in gist.get("conditions", []):
            lines.append(f"{c.get('status', ''):<8}{c.get('condition', '')}   {c.get('sides', '')}")
        if gist.get("reason"):
            lines.append(f"reason: {gist['reason']}")
        self.gate.value = f"<pre>{html.escape(chr(10).join(lines))}</pre>"

    def _mlflow_html(self, version: str | None) -> str:
        """A link to the version's page in MLflow's UI (the model's, when no version is
        chosen), or the command that opens it."""
        from ..store.links import UiLinks

        name = self.model.value
        if not name:
            return ""
        links = UiLinks(self.store.settings)
        link = links.model_version(name, version) if version else links.model(name)
        if link.url:
            return (
                f'<a href="{html.escape(link.url, quote=True)}" target="_blank" '
                f'rel="noopener">{html.escape(link.what)} in MLflow</a>'
            )
        return f"<code>{html.escape(link.command)}</code> opens {html.escape(link.what)} in MLflow"

    def _version_info(self, version: str | None) -> Any:
        if not self.info:
            return None
        return next((v for v in self.info.versions if v.version == version), None)

    # -- acting, after a confirmation ---------------------------------------------------------

    def _ask(self, question: str, action: Callable[[], Any]) -> None:
        self._pending = action
        self.question.value = html.escape(question)
        self.confirm_box.layout.display = "flex"

    def _ask_promote(self, _: Any = None) -> None:
        name, version = self.model.value, self.version.value
        if not name or not version:
            return
        champion = self.info.champion if self.info else None
        from ..registry.promote import promote

        self._ask(
            f"Run the gate and promote {name} v{version} to champion"
            f"{f' (replacing v{champion})' if champion else ''}?",
            lambda: promote(name, version, store=self.store, **self._gate_options),
        )

    def _ask_rollback(self, _: Any = None) -> None:
        name = self.model.value
        if not name or not (self.info and self.info.champion):
            return
        from ..registry.promote import rollback

        self._ask(
            f"Roll back {name}: put back the champion v{self.info.champion} replaced?",
            lambda: rollback(name, store=self.store),
        )

    def _cancel(self, _: Any = None) -> None:
        self._pending = None
        self.confirm_box.layout.display = "none"
        self._say("cancelled")

    def _confirm(self, _: Any = None) -> None:
        action, self._pending = self._pending, None
        self.confirm_box.layout.display = "none"
        if action is None:
            return
        self._say("working...")
        try:
            outcome = action()
        except CellopsError as exc:
            self._say(str(exc), error=True)
            return
        self._say(str(outcome))
        self.refresh()
        self.status.value = f"<pre>{html.escape(str(outcome))}</pre>"

    def _say(self, text: str, error: bool = False) -> None:
        style = ' style="color: #b00020"' if error else ""
        self.status.value = f"<pre{style}>{html.escape(text)}</pre>"

    def state(self) -> dict[str, Any]:
        """What the panel shows, as data (for tests and scripts)."""
        return {
            "model": self.model.value,
            "champion": self.info.champion if self.info else None,
            "versions": [v.version for v in self.info.versions] if self.info else [],
            "status": html.unescape(self.status.value),
            "confirming": self.confirm_box.layout.display != "none",
            "question": html.unescape(self.question.value),
            "mlflow": self.mlflow.value,
        }
