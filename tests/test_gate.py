"""The gate's condition language: parsing, precedence, errors with columns, evaluation, and
that a condition can only read metrics (nothing is ever evaluated as Python)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cellops.errors import CellopsUsageError
from cellops.registry.gate import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NESTING,
    Gate,
    GateSyntaxError,
    UnknownMetricError,
    parse_condition,
)


def holds(text: str, metrics: dict | None = None, champion: dict | None = None) -> bool | None:
    return Gate([text]).evaluate(metrics or {}, champion)[0].passed


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("f1>=0.9", "f1 >= 0.9"),
        ("  recall >= champion.recall*1.02 ", "recall >= champion.recall * 1.02"),
        ("latency_p95_ms < 50", "latency_p95_ms < 50"),
        ("challenger.f1 > champion.f1", "f1 > champion.f1"),
        ("a - (b - c) > 1 / (2 * x)", "a - (b - c) > 1 / (2 * x)"),
        ("(a + b) * c == 1e-3", "(a + b) * c == 1e-3"),
        ("-f1 < -.5", "-f1 < -.5"),
        ("+f1 != 2.", "f1 != 2."),
        ("(f1 >= 0.9 and auc > 0.95) or precision >= champion.precision + 0.05",
         "(f1 >= 0.9 and auc > 0.95) or precision >= champion.precision + 0.05"),
        ("((f1 >= 0.9))", "f1 >= 0.9"),
    ],
)  # fmt: skip
def test_valid_conditions_parse_and_print_back(text: str, normalized: str) -> None:
    assert parse_condition(text).source() == normalized
    assert parse_condition(normalized).source() == normalized  # the printed form reparses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("1 - 2 - 3 == -4", True),  # left-associative
        ("8 / 4 / 2 == 1", True),
        ("10 / 4 == 2.5", True),
        ("-2 * -3 == 6", True),
        ("2 * -(1 + 2) == -6", True),
        ("1 > 2 or 2 > 1 and 3 > 2", True),  # and binds tighter than or
        ("(1 > 2 or 2 > 1) and 3 > 4", False),
        ("1 > 2 or 3 > 4 or 5 > 4", True),
        ("1 < 2 and 2 < 3 and 3 < 2", False),
        ("1 <= 1 and 1 >= 1 and 1 == 1 and 1 != 2 and 1 < 2 and 2 > 1", True),
    ],
)
def test_arithmetic_and_logic_follow_the_usual_precedence(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_metrics_of_both_sides_are_read_and_reported() -> None:
    gate = Gate(["f1 >= 0.9", "recall >= champion.recall * 1.02", "latency_p95_ms < 50"])
    results = gate.evaluate({"f1": 0.93, "recall": 0.80, "latency_p95_ms": 60.0}, {"recall": 0.70})
    assert [r.status for r in results] == ["pass", "pass", "FAIL"]
    relative = results[1].comparisons[0]
    assert (relative.left, relative.op, relative.right) == (
        "recall",
        ">=",
        "champion.recall * 1.02",
    )
    assert relative.left_value == 0.80
    assert relative.right_value == pytest.approx(0.714)
    assert results[1].describe() == "0.8 >= 0.714"
    assert results[2].describe() == "60 < 50"
    assert gate.metrics() == {"f1", "recall", "latency_p95_ms"}
    assert [gate.needs_champion(i) for i in range(3)] == [False, True, False]


def test_every_comparison_of_a_compound_condition_is_shown() -> None:
    [result] = Gate(["f1 >= 0.9 or auc >= champion.auc"]).evaluate(
        {"f1": 0.5, "auc": 0.99}, {"auc": 0.95}
    )
    assert result.passed is True
    assert [c.passed for c in result.comparisons] == [False, True]
    assert result.describe() == "0.5 >= 0.9; 0.99 >= 0.95"


def test_without_a_champion_relative_conditions_are_skipped_not_failed() -> None:
    gate = Gate(["f1 >= 0.9", "recall >= champion.recall", "f1 > 0.5 or auc > champion.auc"])
    results = gate.evaluate({"f1": 0.95, "recall": 0.1, "auc": 0.2}, None)
    assert [r.passed for r in results] == [True, None, None]
    assert "no champion" in results[1].note


@pytest.mark.parametrize(
    ("text", "metrics", "error"),
    [
        ("f1 / zero > 1", {"f1": 1.0, "zero": 0.0}, "division by zero"),
        ("auc > 0.5", {"auc": math.nan}, "nan"),
        ("auc > 0.5", {}, "not available for the challenger"),
        ("auc > champion.auc", {"auc": 1.0}, "not available for the champion"),
    ],
)
def test_a_side_that_cannot_be_computed_fails_the_condition(text, metrics, error) -> None:
    [result] = Gate([text]).evaluate(metrics, {})
    assert result.passed is False
    assert error in result.describe()


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("f1 >= >0.9", 7, "expected a number, metric or '('"),
        ("f1 >=", 6, "ends too early"),
        ("f1 >= 0.9 or", 13, "ends too early"),
        ("(f1 >= 0.9", 11, "expected ')' to close the '(' of column 1"),
        ("f1 >= 0.9)", 10, "unexpected ')'"),
        ("f1 = 0.9", 4, "'=='"),
        ("f1 >= 0.9 && auc > 0.9", 11, "write 'and'"),
        ("f1 >= 0.9 || auc > 0.9", 11, "write 'or'"),
        ("0.8 < f1 < 0.9", 10, "chained comparison"),
        ("f1", 1, "not a condition"),
        ("f1 + 1", 1, "not a condition"),
        ("f1 > 0.5 and 2", 14, "'and' joins conditions"),
        ("(f1 > 1) + 2 > 0", 10, "needs numbers on both sides"),
        ("(f1 > 1) > 0", 1, "compare numbers, not conditions"),
        ("foo.bar > 1", 1, "not a metric"),
        ("champion.f1.x > 1", 1, "not a metric"),
        ("f1 >= 90%", 7, "as a fraction"),
        ("   ", 1, "empty"),
        ("f1 >= 0.9 and and auc > 1", 15, "expected a number"),
    ],
)
def test_syntax_errors_point_at_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(GateSyntaxError) as caught:
        parse_condition(text)
    assert caught.value.column == column
    message = str(caught.value)
    assert words in message
    assert f"at column {column}" in message
    lines = message.splitlines()
    assert lines[1] == f"    {text}"
    assert lines[2] == "    " + " " * (column - 1) + "^"
    assert isinstance(caught.value, CellopsUsageError)  # shown without a traceback


def test_unknown_metrics_are_named_with_the_available_ones() -> None:
    Gate(["f1 >= 0.9 and auc > champion.auc"]).check_names(["f1", "precision", "auc"])
    with pytest.raises(UnknownMetricError) as caught:
        Gate(["recal >= champion.precison"]).check_names(["f1", "precision", "recall", "auc"])
    message = str(caught.value)
    assert "'champion.precison', 'recal'" in message
    assert "available metrics: auc, f1, precision, recall" in message
    assert "did you mean 'precision'" in message


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch {marker}') > 0",
        'exec(\'open("{marker}", "w")\') > 0',
        "f1.__class__ > 0",
        "f1.__class__.__bases__ > 0",
        "f1 ** 2 > 0",
        "f1 if 1 else 2 > 0",
        "[f1][0] > 0",
        "{{1: 2}} > 0",
        "lambda: 1",
        "f1 > 0; open('{marker}', 'w')",
        "f1 > 0 # comment",
        "`id` > 0",
        "f1 @ f1 > 0",
        "not f1 > 0",
        "f1 > 0\nopen('{marker}', 'w')",
    ],
)
def test_python_is_never_evaluated(text: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(CellopsUsageError):
        gate = Gate([text.format(marker=marker)])
        gate.check_names(["f1"])
        gate.evaluate({"f1": 1.0}, None)
    assert not marker.exists()


def test_names_are_looked_up_in_the_metrics_only() -> None:
    """A name that is also a Python builtin is only a metric: read from the dictionary."""

    class Recording(dict):
        def __init__(self, values: dict):
            super().__init__(values)
            self.read: list[str] = []

        def __getitem__(self, key: str) -> float:
            self.read.append(key)
            return super().__getitem__(key)

    metrics = Recording({"open": 2.0, "eval": 3.0, "f1": 0.5, "unused": 9.0})
    [result] = Gate(["open * eval > f1"]).evaluate(metrics, None)
    assert result.passed is True
    assert sorted(metrics.read) == ["eval", "f1", "open"]
    with pytest.raises(UnknownMetricError, match="'__import__'"):
        Gate(["__import__ > 0"]).check_names(["f1"])


def test_limits_on_input() -> None:
    with pytest.raises(GateSyntaxError, match="too long") as caught:
        parse_condition("f1 > " + "1" * MAX_LENGTH)
    message = str(caught.value)
    assert f"{MAX_LENGTH + 5} characters, the limit is {MAX_LENGTH}" in message
    assert len(message) < 400 and "^" not in message  # the text is cut, no caret far away
    with pytest.raises(CellopsUsageError, match="must be a string"):
        parse_condition(0.9)  # type: ignore[arg-type]
    deep = "(" * MAX_NESTING + "f1 > 1" + ")" * MAX_NESTING
    assert parse_condition(deep).source() == "f1 > 1"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("(" * 120 + "f1 >= 0.9" + ")" * 120, MAX_NESTING + 1),  # the report of issue 11
        ("(" * (MAX_NESTING + 1) + "f1 >= 0.9" + ")" * (MAX_NESTING + 1), MAX_NESTING + 1),
        ("-" * 900 + "f1 >= 1", MAX_NESTING + 1),  # signs recurse as parentheses do
        ("-(" * 200 + "f1" + ")" * 200 + " > 1", MAX_NESTING + 1),
        ("f1 > " + "(" * 300, MAX_NESTING + 6),  # unclosed: the limit is met first
    ],
)
def test_nesting_deeper_than_the_limit_is_a_syntax_error_not_a_recursion_error(
    text: str, column: int
) -> None:
    with pytest.raises(GateSyntaxError) as caught:
        Gate([text])
    assert caught.value.column == column
    message = str(caught.value)
    assert f"nested more than {MAX_NESTING} deep (the limit)" in message
    assert f"at column {column}" in message
    assert message.startswith("gate condition '")  # names the condition


def test_long_chains_are_refused_before_printing_or_evaluating_them_could_recurse() -> None:
    """`1+1+...` parses without recursion but prints and evaluates recursively: its depth is
    bounded too, and every condition under the bounds is parsed, printed and evaluated."""
    longest = "1+" * (MAX_DEPTH - 2) + "1 >= f1"  # MAX_DEPTH levels with the comparison
    gate = Gate([longest, "f1 >= " + "2*" * (MAX_DEPTH - 2) + "0"])
    assert [r.passed for r in gate.evaluate({"f1": 1.0}, None)] == [True, True]
    assert parse_condition(gate.trees[0].source()) == gate.trees[0]
    for text in ("1+" * MAX_DEPTH + "1 >= f1", "f1 >= " + "1*" * 490 + "1"):
        assert len(text) <= MAX_LENGTH
        with pytest.raises(GateSyntaxError, match=f"more than {MAX_DEPTH} operations deep"):
            Gate([text])
    # the widest conditions within MAX_LENGTH: flat 'and' chains and long names are fine
    wide = " and ".join(["f1 > 0"] * 90)
    assert Gate([wide]).evaluate({"f1": 1.0}, None)[0].passed is True
    name = "m" * (MAX_LENGTH - 5)
    assert Gate([f"{name} > 0"]).evaluate({name: 1.0}, None)[0].passed is True


def test_a_syntax_error_in_pyproject_names_the_table() -> None:
    with pytest.raises(GateSyntaxError, match=r"^\[tool.cellops.models.fraud\] in pyproject"):
        parse_condition("(" * 40 + "f1 > 1" + ")" * 40, "[tool.cellops.models.fraud] in pyproject")
