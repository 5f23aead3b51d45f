"""The step graph as an SVG picture: parameters and input files, steps, output files.

Laid out left to right in layers (a node sits one layer after everything it reads), drawn with
ElementTree, so it needs no Graphviz binary. Steps are coloured by their status.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..data.graph import StepGraph

STATE_COLOURS = {
    "fresh": "#d4edda",
    "cached": "#d1ecf1",
    "stale": "#fff3cd",
    "failed": "#f8d7da",
    "never run": "#eeeeee",
}
_CHAR_W, _NODE_H, _ROW_GAP, _COL_GAP, _PAD = 7.2, 28, 14, 56, 16
_STYLE = {
    "param": {"fill": "#f3f3f3", "stroke": "#999999", "rx": "14"},
    "file": {"fill": "#ffffff", "stroke": "#3b6ea8", "rx": "8"},
    "step": {"stroke": "#444444", "rx": "3"},
}


def _layout(graph: StepGraph) -> tuple[dict[str, tuple[str, str]], dict[str, int], list]:
    """Nodes (id -> (kind, text)), their layers, and edges (source, target, label)."""
    nodes: dict[str, tuple[str, str]] = {}
    layer: dict[str, int] = {}
    edges: list[tuple[str, str, str]] = []
    for step in graph.steps:
        sources = []
        for name in step.params:
            node = f"param:{name}"
            nodes.setdefault(node, ("param", name))
            layer.setdefault(node, 0)
            sources.append((node, ""))
        for label in step.files_in:
            node = f"file:{label}"
            nodes.setdefault(node, ("file", label))
            layer.setdefault(node, 0)
            sources.append((node, ""))
        for upstream, variables in step.upstream.items():
            sources.append((f"step:{upstream}", ", ".join(variables)))
        me = f"step:{step.name}"
        nodes[me] = ("step", step.name)
        layer[me] = 1 + max((layer.get(s, 0) for s, _ in sources), default=-1)
        edges += [(source, me, label) for source, label in sources if source in nodes]
        for label in step.files_out:
            node = f"file:{label}"
            nodes.setdefault(node, ("file", label))
            layer[node] = max(layer.get(node, 0), layer[me] + 1)
            edges.append((me, node, ""))
    return nodes, layer, edges


def lineage_svg(graph: StepGraph, states: dict[str, str] | None = None) -> str:
    """An SVG document of the graph; `states` maps step names to fresh/cached/stale/..."""
    states = states or {}
    nodes, layer, edges = _layout(graph)
    columns: dict[int, list[str]] = {}
    for node in nodes:
        columns.setdefault(layer[node], []).append(node)
    width_of = {node: 24 + _CHAR_W * len(text) for node, (_, text) in nodes.items()}
    boxes: dict[str, tuple[float, float, float]] = {}  # node -> x, y, width
    x = _PAD
    for index in sorted(columns):
        column_w = max(width_of[n] for n in columns[index])
        for row, node in enumerate(columns[index]):
            boxes[node] = (x, _PAD + 18 + row * (_NODE_H + _ROW_GAP), width_of[node])
        x += column_w + _COL_GAP
    rows = max((len(c) for c in columns.values()), default=0)
    width = max(x - _COL_GAP + _PAD, 240)
    height = _PAD * 2 + 18 + rows * (_NODE_H + _ROW_GAP) + 16
    svg = ET.Element(
        "svg",
        xmlns="http://www.w3.org/2000/svg",
        width=f"{width:.0f}",
        height=f"{height:.0f}",
        viewBox=f"0 0 {width:.0f} {height:.0f}",
        attrib={"font-family": "sans-serif", "font-size": "12", "class": "cellops-lineage"},
    )
    _arrowhead(svg)
    title = ET.SubElement(svg, "text", x=str(_PAD), y=str(_PAD + 4), fill="#333333")
    title.text = f"{graph.notebook}: {len(graph.steps)} step(s)"
    for source, target, label in edges:
        _edge(svg, boxes[source], boxes[target], label)
    for node, (kind, text) in nodes.items():
        state = states.get(text) if kind == "step" else None
        _node(svg, boxes[node], kind, text, state)
    _legend(svg, height)
    return ET.tostring(svg, encoding="unicode")


def _arrowhead(svg: ET.Element) -> None:
    defs = ET.SubElement(svg, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        id="cellops-arrow",
        viewBox="0 0 10 10",
        refX="10",
        refY="5",
        markerWidth="7",
        markerHeight="7",
        orient="auto",
    )
    ET.SubElement(marker, "path", d="M 0 0 L 10 5 L 0 10 z", fill="#777777")


def _edge(svg: ET.Element, source: tuple, target: tuple, label: str) -> None:
    x1, y1 = source[0] + source[2], source[1] + _NODE_H / 2
    x2, y2 = target[0], target[1] + _NODE_H / 2
    bend = max(abs(x2 - x1) / 2, 20)
    path = ET.SubElement(
        svg,
        "path",
        d=f"M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {x2 - bend:.1f} {y2:.1f}, "
        f"{x2:.1f} {y2:.1f}",
        fill="none",
        stroke="#777777",
        attrib={"marker-end": "url(#cellops-arrow)"},
    )
    if label:
        ET.SubElement(path, "title").text = label
        text = ET.SubElement(
            svg,
            "text",
            x=f"{(x1 + x2) / 2:.1f}",
            y=f"{(y1 + y2) / 2 - 4:.1f}",
            fill="#666666",
            attrib={"font-size": "10", "text-anchor": "middle"},
        )
        text.text = label


def _node(svg: ET.Element, box: tuple, kind: str, text: str, state: str | None) -> None:
    x, y, w = box
    group = ET.SubElement(svg, "g", attrib={"class": f"cellops-{kind}"})
    ET.SubElement(group, "title").text = f"{kind} {text}" + (f" ({state})" if state else "")
    style = dict(_STYLE[kind])
    if kind == "step":
        style["fill"] = STATE_COLOURS.get(state or "", "#e8e8f8")
    ET.SubElement(
        group, "rect", x=f"{x:.1f}", y=f"{y:.1f}", width=f"{w:.1f}", height=str(_NODE_H), **style
    )
    label = ET.SubElement(
        group,
        "text",
        x=f"{x + w / 2:.1f}",
        y=f"{y + _NODE_H / 2 + 4:.1f}",
        attrib={"text-anchor": "middle", "font-weight": "bold" if kind == "step" else "normal"},
    )
    label.text = text


def _legend(svg: ET.Element, height: float) -> None:
    x = _PAD
    for state, colour in STATE_COLOURS.items():
        ET.SubElement(
            svg, "rect", x=f"{x}", y=f"{height - 18}", width="10", height="10", fill=colour,
            stroke="#999999",
        )  # fmt: skip
        text = ET.SubElement(svg, "text", x=f"{x + 14}", y=f"{height - 9}", fill="#555555")
        text.attrib["font-size"] = "10"
        text.text = state
        x += 24 + _CHAR_W * len(state)
