"""Plain text for people: tables the CLI, the magics and the core's summaries print."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with a header rule, columns padded to fit."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def split_names(text: str | None) -> list[str]:
    """The names or paths of a comma-separated list (`a, b,c`), stripped, empty ones dropped.

    A part that starts with a quote runs to the matching quote and keeps its commas and spaces
    (`"my, file.csv", 'b c.csv'` is two paths); a quote inside a part (`bob's.csv`) is kept as
    typed. An unclosed quote is a `CellopsUsageError`. Every flag that takes a list (the
    `%%step` flags, `--columns`, `--metrics`) splits it here, so they all read quotes alike.
    """
    text = text or ""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        quoted = ""
        if i < n and text[i] in "\"'":
            end = text.find(text[i], i + 1)
            if end < 0:
                from .errors import CellopsUsageError

                raise CellopsUsageError(
                    f'unclosed {text[i]} in {text!r}: close it, for example "my file.csv"'
                )
            quoted, i = text[i + 1 : end], end + 1
        comma = text.find(",", i)
        comma = n if comma < 0 else comma
        item = quoted + text[i:comma].strip()  # as typed inside the quotes: spaces kept
        if item.strip():
            parts.append(item)
        i = comma + 1
    return parts
