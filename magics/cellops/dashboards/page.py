"""The dashboard as one page of plain HTML and a little JavaScript, from a snapshot: the
static export, what `cellops dashboard --static` serves, and what a view waiting in line for a
kernel sees meanwhile.

Every model's page is in it (hidden but the chosen one); a `<select>` chooses the model (and
`?model=NAME` the first one shown), another the column whose distributions are drawn. Served,
it asks the server every few seconds whether a newer snapshot exists and reloads when one
does; in line, it asks for its place and goes to the live view when its turn comes. No CDN,
no external script: it opens offline.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .render import STYLE, paragraph

_CSS = """<style>
.cellops-dash [hidden] { display: none !important; }
.cellops-dash h1 { font-size: 22px; margin: 4px 0 8px; }
.cellops-dash .cellops-stamp { color: #555; font-size: 12px; }
.cellops-dash label { margin-right: 12px; }
</style>"""

# The page's behaviour; CONFIG is replaced by a JSON object (see `static_page`).
_SCRIPT = """<script>
(function () {
  var config = CONFIG;
  var pages = Array.prototype.slice.call(document.querySelectorAll(".cellops-page"));
  var chooser = document.getElementById("cellops-model");
  var unknown = document.querySelector(".cellops-unknown");
  function show(name) {
    pages.forEach(function (p) { p.hidden = p.dataset.model !== name; });
    if (chooser) { chooser.value = name; }
  }
  function remember(name) {
    var url = new URL(window.location.href);
    url.searchParams.set("model", name);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.toString());
  }
  if (new URLSearchParams(window.location.search).has("token")) {  // a cookie holds it now
    var bare = new URL(window.location.href);
    bare.searchParams.delete("token");
    window.history.replaceState(null, "", bare.toString());
  }
  var names = pages.map(function (p) { return p.dataset.model; });
  var wanted = new URLSearchParams(window.location.search).get("model") || config.model;
  if (wanted && names.indexOf(wanted) < 0 && unknown) {
    unknown.textContent = "there is no model named '" + wanted + "' (models: " +
      (names.join(", ") || "none") + ")";
    unknown.hidden = false;
  }
  if (names.length) { show(names.indexOf(wanted) >= 0 ? wanted : names[0]); }
  if (chooser) {
    chooser.addEventListener("change", function () {
      show(chooser.value);
      remember(chooser.value);
    });
  }
  pages.forEach(function (p) {
    var columns = p.querySelector(".cellops-column select");
    if (!columns) { return; }
    var boxes = p.querySelectorAll(".cellops-distribution-box");
    columns.addEventListener("change", function () {
      boxes.forEach(function (b) { b.hidden = b.dataset.column !== columns.value; });
    });
  });
  function current() { return chooser ? chooser.value : ""; }
  if (config.stamp_url) {
    setInterval(function () {
      fetch(config.stamp_url, {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (s && s.built && s.built !== config.built) {
            var url = new URL(window.location.href);
            if (current()) { url.searchParams.set("model", current()); }
            window.location.replace(url.toString());
          }
        }).catch(function () {});
    }, config.stamp_every * 1000);
  }
  if (config.queue_url) {
    var place = document.querySelector(".cellops-place");
    var poll = function () {
      fetch(config.queue_url, {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (q) {
          if (!q) { return; }
          if (q.state === "go") {
            var url = new URL(q.url, window.location.href);
            if (current()) { url.searchParams.set("model", current()); }
            window.location.replace(url.toString());
            return;
          }
          if (place && q.place) { place.textContent = q.place; }
        }).catch(function () {});
    };
    setInterval(poll, config.queue_every * 1000);
  }
})();
</script>"""


def _options(values: list[str], chosen: str | None) -> str:
    return "".join(
        f'<option value="{html.escape(v, quote=True)}"{" selected" if v == chosen else ""}>'
        f"{html.escape(v)}</option>"
        for v in values
    )


def _model_section(name: str, page: dict[str, Any], shown: bool) -> str:
    quoted = html.escape(name, quote=True)
    parts = [
        f'<section class="cellops-page" data-model="{quoted}"{"" if shown else " hidden"}>',
        f"<h2>model {html.escape(name)}</h2>",
        f'<div class="cellops-drift">{page.get("drift", "")}</div>',
    ]
    columns = page.get("columns") or []
    if columns:
        parts.append("<h3>Reference vs current</h3>")
        parts.append(f'<label class="cellops-column">column <select>{_options(columns, columns[0])}'
                     "</select></label>")  # fmt: skip
        for i, column in enumerate(columns):
            body = page.get("distributions", {}).get(column, "")
            parts.append(f'<div class="cellops-distribution-box" data-column='
                         f'"{html.escape(column, quote=True)}"{"" if i == 0 else " hidden"}>'
                         f"{body}</div>")  # fmt: skip
    parts.append(f'<div class="cellops-registry">{page.get("registry", "")}</div>')
    parts.append(f'<div class="cellops-jobs-box">{page.get("jobs", "")}</div>')
    parts.append(f'<div class="cellops-serving">{page.get("serving", "")}</div>')
    return "".join(parts) + "</section>"


def page_body(snapshot: dict[str, Any], model: str | None = None, banner: str = "") -> str:
    """The dashboard's `<div class="cellops-dash">`: every model's section, `model` shown."""
    from .data import NO_MODELS, choose_model

    models = [m for m in snapshot.get("models", []) if m in snapshot.get("pages", {})]
    chosen, problem = choose_model(models, model)
    parts = [f'<div class="cellops-dash" data-built="{snapshot.get("built", "")}">', STYLE, _CSS,
             "<h1>Drift dashboard</h1>", banner]  # fmt: skip
    if snapshot.get("stamp"):
        parts.append(paragraph(f"read from the store at {snapshot['stamp']}", "cellops-stamp"))
    if snapshot.get("error"):
        parts.append(paragraph(snapshot["error"], "cellops-empty"))
    elif not models:
        parts.append(paragraph(NO_MODELS, "cellops-empty"))
    parts.append(f'<p class="cellops-note cellops-unknown"{"" if problem else " hidden"}>'
                 f"{html.escape(problem)}</p>")  # fmt: skip
    if models:
        parts.append(f'<label class="cellops-model">model <select id="cellops-model">'
                     f"{_options(models, chosen)}</select></label>")  # fmt: skip
    parts += [_model_section(m, snapshot["pages"][m], m == chosen) for m in models]
    return "".join(parts) + "</div>"


def static_page(
    snapshot: dict[str, Any],
    model: str | None = None,
    *,
    stamp_url: str = "",
    stamp_every: float = 10.0,
    queue: dict[str, Any] | None = None,
) -> str:
    """The whole page. `stamp_url`: where a served page asks for the snapshot's time (it
    reloads when a newer one exists); `queue`: a view waiting for a kernel (`url` to ask,
    `place`, `bound`), shown as a banner above the shared data."""
    banner = ""
    config = {"model": model or "", "built": snapshot.get("built", ""), "stamp_url": stamp_url,
              "stamp_every": stamp_every, "queue_url": "", "queue_every": 2}  # fmt: skip
    if queue:
        config["queue_url"] = queue["url"]
        banner = (
            '<div class="cellops-banner cellops-queue">All '
            f"{int(queue['bound'])} live views of this dashboard are taken: you are number "
            f'<b class="cellops-place">{int(queue["place"])}</b> in line for one, and this '
            "page moves to it when your turn comes. Meanwhile it shows the same data, read "
            "from the store for everyone.</div>"
        )
    script = _SCRIPT.replace("CONFIG", json.dumps(config).replace("</", "<\\/"))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>cellops drift dashboard</title></head>\n<body>"
        + page_body(snapshot, model, banner)
        + script
        + "</body></html>\n"
    )
