"""The dashboard's sections as HTML fragments, read from the store once and drawn once.

`model_page` reads everything shown for one model (its drift history, latest check, the two
profiles, registry and jobs) and draws it: charts as SVG (matplotlib, text kept as text), tables
as HTML. The fragments go into the snapshot (`snapshot.py`) that every view shares: a Voila
view, the static page and the export only lay them out. No raw data ever reaches a fragment,
only profiles and scores.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import Any

from . import data as dd
from . import serving as sv

STYLE = """<style>
.cellops-dash { font-family: system-ui, sans-serif; }
.cellops-dash table { border-collapse: collapse; font-size: 13px; margin: 4px 0 12px; }
.cellops-dash th, .cellops-dash td { border-bottom: 1px solid #ddd; padding: 3px 10px;
  text-align: left; }
.cellops-dash .cellops-note { color: #a15c00; }
.cellops-dash .cellops-empty { font-size: 15px; padding: 8px; background: #fff6e0; }
.cellops-dash .cellops-banner { font-size: 14px; padding: 8px 12px; background: #eef4fb;
  border-left: 4px solid #1f77b4; margin-bottom: 10px; }
</style>"""


def paragraph(text: str, css: str = "") -> str:
    return f'<p class="{css}">{html.escape(text)}</p>'


def _svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cellops"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def table(headers: tuple[str, ...], rows: list[tuple[str, ...]], css: str) -> str:
    """A plain table, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table class="cellops-table {css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def linked_table(
    headers: tuple[str, ...], rows: list[tuple[str, ...]], links: list, css: str
) -> str:
    """`table` with a last column "MLflow": each row's page in MLflow's UI (a link, or the
    `cellops ui` command that opens it)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in (*headers, "MLflow"))
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        + f"<td>{dd.link_html(link)}</td></tr>"
        for row, link in zip(rows, links, strict=True)
    )
    return (
        f'<table class="cellops-table {css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def share_html(points: list[dd.SharePoint], threshold: float | None) -> str:
    """The drift share per check as a line (dataset drift marked red), its values in
    `data-shares`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.6))
    ax = fig.add_subplot()
    x = list(range(len(points)))
    shares = [p.share for p in points]
    ax.plot(x, shares, marker="o", color="#1f77b4", gid="drift-share-line")
    drifted = [(i, p.share) for i, p in enumerate(points) if p.dataset_drift]
    if drifted:
        ax.scatter(*zip(*drifted, strict=True), color="#d62728", zorder=3, label="dataset drift")
        ax.legend(loc="upper left", fontsize=8)
    for i, p in enumerate(points):
        ax.annotate(f"{p.share:.2f}", (i, p.share), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8, gid=f"share-label-{i}")  # fmt: skip
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="grey", lw=1)
    step = max(1, len(points) // 8)
    ax.set_xticks(x[::step], [f"{p.when:%m-%d %H:%M}" for p in points][::step], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("drift share")
    ax.set_title("share of drifted columns per check", fontsize=10)
    values = ",".join(f"{s:.4f}" for s in shares)
    return f'<div class="cellops-share-chart" data-shares="{values}">{_svg(fig)}</div>'


def distribution_html(dist: dd.Distribution, version: str) -> str:
    """Reference vs current shares of one column as paired bars, with its missing shares."""
    parts = [f'<div class="cellops-distribution" data-column="{html.escape(dist.column)}">']
    if dist.kind == "none" or not dist.labels:
        parts.append(paragraph(f"{dist.column}: {dist.note or 'nothing to draw'}", "cellops-note"))
        return "".join(parts) + "</div>"
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8))
    ax = fig.add_subplot()
    n = len(dist.labels)
    x = list(range(n))
    width = 0.42
    ax.bar([i - width / 2 for i in x], dist.reference, width, label=f"reference (v{version})",
           color="#7f7f7f")  # fmt: skip
    ax.bar([i + width / 2 for i in x], dist.current, width, label="current", color="#1f77b4")
    step = max(1, n // 10)
    ax.set_xticks(x[::step], dist.labels[::step], fontsize=8,
                  rotation=30 if dist.kind == "categorical" else 0)  # fmt: skip
    ax.set_ylabel("share of rows")
    ax.set_title(f"{dist.column}: reference vs current", fontsize=10)
    ax.legend(fontsize=8)
    parts.append(_svg(fig))
    missing = (
        f"missing: {dist.missing_reference:.1%} in reference, {dist.missing_current:.1%} in current"
    )
    parts.append(paragraph(missing + (f"; {dist.note}" if dist.note else ""), "cellops-note"))
    return "".join(parts) + "</div>"


def registry_html(view: dd.RegistryView) -> str:
    if not view.registered:
        return paragraph("not a registered model (drift history only)", "cellops-note")
    aliases = ", ".join(f"@{a} = v{v}" for a, v in view.aliases.items()) or "no aliases"
    parts = [paragraph(aliases, "cellops-aliases")]
    parts.append(
        paragraph("last promotion: " + (view.last_promotion or "none yet"), "cellops-promotion")
    )
    if view.last_event:
        parts.append(paragraph("last gate event: " + view.last_event, "cellops-event"))
    parts.append(linked_table(dd.VERSION_HEADERS, view.versions, view.links, "cellops-versions"))
    return "".join(parts)


def jobs_html(rows: list[dd.JobRow]) -> str:
    if not rows:
        return paragraph("no jobs yet (cellops run NOTEBOOK)", "cellops-note")
    cells = [r.cells() for r in rows]
    return linked_table(dd.JOB_HEADERS, cells, [r.mlflow for r in rows], "cellops-jobs")


def serving_html(view: Any) -> str:
    if view.empty:
        return paragraph(
            "nothing served in the last day and no rollout (cellops serve NAME; then cellops "
            "monitor --performance to judge it on labelled traffic)",
            "cellops-note",
        )
    parts = []
    if view.rollout:
        parts.append(f'<pre class="cellops-rollout">{html.escape(view.rollout)}</pre>')
    if view.traffic:
        parts.append(table(sv.TRAFFIC_HEADERS, view.traffic, "cellops-traffic"))
    if view.performance:
        parts.append(paragraph("performance on labelled served traffic", "cellops-subtitle"))
        parts.append(table(sv.PERFORMANCE_HEADERS, view.performance, "cellops-performance"))
    return "".join(parts)


def guarded(title: str, build: Callable[[], str]) -> str:
    """One section: its title and HTML, or what went wrong, so one bad record never takes the
    page down."""
    try:
        body = build()
    except Exception as exc:
        body = paragraph(f"could not show this: {type(exc).__name__}: {exc}", "cellops-note")
    return f"<h3>{html.escape(title)}</h3>{body}" if title else body


def model_page(store: Any, name: str) -> dict[str, Any]:
    """Every fragment shown for model `name`: `drift` (headline, share chart, per-column
    table), `columns` with one `distributions` fragment each, `registry` and `jobs`."""
    latest = dd.latest_check(store, name)
    result = latest.result if latest else None
    page: dict[str, Any] = {"columns": [], "distributions": {}}
    if latest is None:
        page["drift"] = paragraph(dd.NO_CHECKS.format(name=name), "cellops-empty")
    else:
        threshold = result.share_threshold if result else None
        parts = [paragraph(latest.headline, "cellops-headline")]

        def series() -> str:
            return share_html(dd.share_series(store, name), threshold)

        parts.append(guarded("Drift share over time", series))
        if result is not None:
            parts.append(guarded("Latest check, per column", lambda: table(
                dd.COLUMN_HEADERS, dd.column_rows(result), "cellops-columns")))  # fmt: skip
            page["columns"] = [row[0] for row in dd.column_rows(result)]
        page["drift"] = "".join(parts)
    if page["columns"]:
        profiles: list[Any] = []

        def one(column: str) -> str:
            if not profiles:
                profiles.extend(dd.load_profiles(store, name, latest))
            reference, current, note = profiles
            found = distribution_html(dd.distribution(column, reference, current), latest.version)
            return found + (paragraph(note, "cellops-note") if note else "")

        page["distributions"] = {c: guarded("", lambda c=c: one(c)) for c in page["columns"]}
    page["registry"] = guarded("Versions and aliases",
                               lambda: registry_html(dd.registry_view(store, name)))  # fmt: skip
    page["jobs"] = guarded("Recent jobs", lambda: jobs_html(dd.recent_jobs(store, name)))
    page["serving"] = guarded("Serving: rollout and traffic of the last day",
                              lambda: serving_html(sv.serving_view(store, name)))  # fmt: skip
    return page
