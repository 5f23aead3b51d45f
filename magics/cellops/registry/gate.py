"""The promotion gate's language: a small parser and evaluator, never `eval`.

A condition is an expression over metric names (`f1`, `latency_p95_ms`), the current
champion's metrics (`champion.recall`), numbers, `+ - * /`, the comparisons `< <= > >= == !=`,
`and`, `or` and parentheses::

    f1 >= 0.90
    latency_p95_ms < 50
    recall >= champion.recall * 1.02
    (f1 >= 0.9 and auc > 0.95) or precision >= champion.precision + 0.05

The text is tokenized and parsed into a tree of the node classes below; evaluation walks that
tree with a dictionary of numbers, so a condition can read metrics and nothing else. A syntax
error names the column and draws a caret under it.

Parsing and evaluation recurse, so a condition's size is bounded before any recursion can run
out of stack: at most `MAX_LENGTH` characters, parentheses and signs nested at most
`MAX_NESTING` deep, and a tree at most `MAX_DEPTH` operations deep (a gate in pyproject.toml is
read by every promotion and retraining job: a `RecursionError` there would stop them all).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import CellopsUsageError

CHAMPION = "champion"
MAX_LENGTH = 1000
MAX_NESTING = 32  # parentheses and signs (`-(-(...))`) inside one another
MAX_DEPTH = 100  # operations inside one another, `a + b + c ...` included

COMPARISONS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
KEYWORDS = {"and", "or"}
_HINTS = {"=": " (compare with '==', '>=' or '<=')", "&&": " (write 'and')", "&": " (write 'and')",
          "||": " (write 'or')", "|": " (write 'or')", "!": " (use '!=')"}  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?%?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\))
    """,
    re.VERBOSE,
)


_EXAMPLE = (
    "a condition compares metrics and numbers, for example: "
    "f1 >= 0.9 and recall >= champion.recall * 1.02"
)


class GateSyntaxError(CellopsUsageError):
    """A condition that cannot be parsed; the message shows where (`column`, or None when
    the problem is the whole condition: its length or its depth)."""

    def __init__(self, text: str, column: int | None, problem: str):
        self.text, self.column, self.problem = text, column, problem
        if column is None:
            super().__init__(f"gate condition {_shown(text)}: {problem}\n{_EXAMPLE}")
            return
        pointer = " " * (column - 1) + "^"
        super().__init__(
            f"gate condition {text!r}: {problem} at column {column}\n    {text}\n    {pointer}\n"
            + _EXAMPLE
        )


def _shown(text: str, width: int = 80) -> str:
    return repr(text) if len(text) <= width else repr(text[:width]) + "..."


class UnknownMetricError(CellopsUsageError):
    def __init__(self, text: str, names: list[str], available: Iterable[str], note: str = ""):
        self.names = names
        self.available = sorted(available)
        listed = ", ".join(self.available)
        guesses = {
            match
            for name in names
            for match in difflib.get_close_matches(name.split(".")[-1], self.available, 1)
        }
        hint = f" (did you mean {', '.join(map(repr, sorted(guesses)))}?)" if guesses else ""
        super().__init__(
            f"gate condition {text!r}: unknown metric {', '.join(map(repr, names))}{hint}; "
            f"available metrics: {listed} (and champion.<metric> for the champion's)"
            + (f"; {note}" if note else "")
        )


@dataclass(frozen=True)
class Token:
    kind: str  # number | name | op | keyword | end
    text: str
    column: int  # 1-based


# -- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    text: str

    def source(self) -> str:
        return self.text


@dataclass(frozen=True)
class Metric:
    name: str
    champion: bool = False

    def source(self) -> str:
        return f"{CHAMPION}.{self.name}" if self.champion else self.name


@dataclass(frozen=True)
class Negate:
    operand: Expr

    def source(self) -> str:
        return f"-{self.operand.source()}"


@dataclass(frozen=True)
class Arithmetic:
    op: str
    left: Expr
    right: Expr

    def source(self) -> str:
        return f"{_wrapped(self.left, self.op)} {self.op} {_wrapped(self.right, self.op, True)}"


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr

    def source(self) -> str:
        return f"{self.left.source()} {self.op} {self.right.source()}"


@dataclass(frozen=True)
class Logic:
    op: str  # and | or
    operands: tuple[Condition, ...]

    def source(self) -> str:
        return f" {self.op} ".join(
            f"({o.source()})" if isinstance(o, Logic) else o.source() for o in self.operands
        )


Expr = Number | Metric | Negate | Arithmetic
Condition = Compare | Logic


def _wrapped(node: Expr, parent_op: str, right: bool = False) -> str:
    if isinstance(node, Arithmetic):
        weaker = node.op in "+-" and parent_op in "*/"
        if weaker or (right and parent_op in "-/"):
            return f"({node.source()})"
    return node.source()


# -- parsing ----------------------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            hint = _HINTS.get(text[position : position + 2], _HINTS.get(char, ""))
            raise GateSyntaxError(text, position + 1, f"unexpected character {char!r}{hint}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "number" and value.endswith("%"):
            raise GateSyntaxError(text, position + 1, f"write {value} as a fraction")
        if kind == "name" and value in KEYWORDS:
            kind = "keyword"
        if kind != "space":
            tokens.append(Token(kind, value, position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.nesting = 0  # parentheses and signs open around the current token

    def enter(self, token: Token) -> None:
        """One level deeper (a '(' or a sign); refused past MAX_NESTING, before recursing."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            what = "parentheses" if token.text == "(" else "parentheses and signs"
            raise self.fail(
                f"{what} nested more than {MAX_NESTING} deep (the limit); write it flatter, "
                "or split it into several conditions of the gate list",
                token,
            )

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def fail(self, problem: str, token: Token | None = None) -> GateSyntaxError:
        token = token or self.token
        return GateSyntaxError(self.text, token.column, problem)

    def describe(self, token: Token) -> str:
        return "the end of the condition" if token.kind == "end" else repr(token.text)

    def parse(self) -> Condition:
        node = self.disjunction()
        if self.token.kind != "end":
            raise self.fail(f"unexpected {self.describe(self.token)}")
        if not _is_condition(node):
            raise self.fail(
                f"{node.source()!r} is a value, not a condition: compare it, "
                f"for example {node.source()} >= 0.9",
                self.tokens[0],
            )
        return node

    def disjunction(self) -> Expr | Condition:
        return self._logic("or", self.conjunction)

    def conjunction(self) -> Expr | Condition:
        return self._logic("and", self.comparison)

    def _logic(self, word: str, operand) -> Expr | Condition:
        parts = [(self.token, operand())]
        while self.token.kind == "keyword" and self.token.text == word:
            self.advance()
            parts.append((self.token, operand()))
        if len(parts) == 1:
            return parts[0][1]
        for start, node in parts:
            if not _is_condition(node):
                raise self.fail(
                    f"'{word}' joins conditions, but {node.source()!r} is a value", start
                )
        return Logic(word, tuple(node for _, node in parts))  # type: ignore[misc]

    def comparison(self) -> Expr | Condition:
        start = self.token
        left = self.sum()
        if self.token.kind == "op" and self.token.text in COMPARISONS:
            op = self.advance()
            if _is_condition(left):
                raise self.fail("compare numbers, not conditions", start)
            right_start = self.token
            right = self.sum()
            if _is_condition(right):
                raise self.fail("compare numbers, not conditions", right_start)
            if self.token.kind == "op" and self.token.text in COMPARISONS:
                raise self.fail(
                    f"chained comparison: write it with 'and', for example "
                    f"{left.source()} {op.text} {right.source()} and "
                    f"{right.source()} {self.token.text} ..."
                )
            return Compare(op.text, left, right)
        return left

    def sum(self) -> Expr | Condition:
        node = self.product()
        while self.token.kind == "op" and self.token.text in "+-":
            op = self.advance()
            right = self.product()
            node = Arithmetic(op.text, self._number(node, op), self._number(right, op))
        return node

    def product(self) -> Expr | Condition:
        node = self.unary()
        while self.token.kind == "op" and self.token.text in "*/":
            op = self.advance()
            right = self.unary()
            node = Arithmetic(op.text, self._number(node, op), self._number(right, op))
        return node

    def _number(self, node: Expr | Condition, op: Token) -> Expr:
        if _is_condition(node):
            raise self.fail(f"'{op.text}' needs numbers on both sides, not a condition", op)
        return node  # type: ignore[return-value]

    def unary(self) -> Expr | Condition:
        if self.token.kind == "op" and self.token.text in "+-":
            op = self.advance()
            self.enter(op)
            operand = self._number(self.unary(), op)
            self.nesting -= 1
            return Negate(operand) if op.text == "-" else operand
        return self.atom()

    def atom(self) -> Expr | Condition:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Number(float(token.text), token.text)
        if token.kind == "name":
            self.advance()
            return self._metric(token)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.enter(token)
            node = self.disjunction()
            if self.token.kind != "op" or self.token.text != ")":
                raise self.fail(f"expected ')' to close the '(' of column {token.column}")
            self.advance()
            self.nesting -= 1
            return node
        if token.kind == "end":
            raise self.fail("the condition ends too early: expected a number, metric or '('")
        raise self.fail(f"expected a number, metric or '(', not {self.describe(token)}")

    def _metric(self, token: Token) -> Metric:
        parts = token.text.split(".")
        if len(parts) == 1:
            return Metric(parts[0])
        if len(parts) == 2 and parts[0] == CHAMPION:
            return Metric(parts[1], champion=True)
        if len(parts) == 2 and parts[0] == "challenger":
            return Metric(parts[1])
        raise self.fail(
            f"{token.text!r} is not a metric: use a metric name, or champion.<metric> "
            "for the current champion's", token
        )  # fmt: skip


def _is_condition(node: object) -> bool:
    return isinstance(node, (Compare, Logic))


def parse_condition(text: str, where: str = "") -> Condition:
    """Parse one condition; raise GateSyntaxError (with the column) when it is malformed.

    `where` names the condition's origin in the message (a pyproject.toml table)."""
    try:
        return _parse(text)
    except GateSyntaxError as exc:
        if where:
            exc.args = (f"{where}: {exc}",)
        raise


def _parse(text: str) -> Condition:
    if not isinstance(text, str):
        raise CellopsUsageError(f"a gate condition must be a string, got {text!r}")
    if len(text) > MAX_LENGTH:
        raise GateSyntaxError(
            text,
            None,
            f"the condition is too long: {len(text)} characters, the limit is {MAX_LENGTH}; "
            "split it into several conditions of the gate list (all of them must hold)",
        )
    if not text.strip():
        raise GateSyntaxError(text, 1, "the condition is empty")
    tree = _Parser(text).parse()
    if _depth(tree) > MAX_DEPTH:
        raise GateSyntaxError(
            text,
            None,
            f"the condition is more than {MAX_DEPTH} operations deep (the limit); split it "
            "into several conditions of the gate list",
        )
    return tree


def _depth(tree: Condition) -> int:
    """How deep the tree is, walked without recursion (printing and evaluating it recurse)."""
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Logic):
            pending += [(child, depth + 1) for child in node.operands]
        elif isinstance(node, (Arithmetic, Compare)):
            pending += [(node.left, depth + 1), (node.right, depth + 1)]
        elif isinstance(node, Negate):
            pending.append((node.operand, depth + 1))
    return deepest


# -- evaluation -------------------------------------------------------------------------------


def metric_names(node: Condition | Expr) -> set[Metric]:
    if isinstance(node, Metric):
        return {node}
    if isinstance(node, Number):
        return set()
    if isinstance(node, Negate):
        return metric_names(node.operand)
    if isinstance(node, (Arithmetic, Compare)):
        return metric_names(node.left) | metric_names(node.right)
    return set().union(*(metric_names(o) for o in node.operands))


@dataclass
class Comparison:
    """One comparison as evaluated: both sides' text and value, and whether it held."""

    left: str
    op: str
    right: str
    left_value: float | None
    right_value: float | None
    passed: bool
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"{self.left} {self.op} {self.right}: {self.error}"
        return f"{_fmt(self.left_value)} {self.op} {_fmt(self.right_value)}"

    def to_dict(self) -> dict:
        return {
            "left": self.left, "op": self.op, "right": self.right,
            "left_value": self.left_value, "right_value": self.right_value,
            "passed": self.passed, "error": self.error,
        }  # fmt: skip


@dataclass
class ConditionResult:
    text: str
    passed: bool | None  # None: skipped (it needs a champion and there is none)
    comparisons: list[Comparison] = field(default_factory=list)
    note: str = ""

    @property
    def status(self) -> str:
        return "skipped" if self.passed is None else ("pass" if self.passed else "FAIL")

    def describe(self) -> str:
        sides = "; ".join(c.describe() for c in self.comparisons)
        return sides or self.note

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "passed": self.passed,
            "note": self.note,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


class Gate:
    """A list of parsed conditions; all must hold."""

    def __init__(self, conditions: Iterable[str], where: str = ""):
        self.texts = [str(c) for c in conditions]
        self.trees = [parse_condition(text, where) for text in self.texts]

    def __len__(self) -> int:
        return len(self.trees)

    def metrics(self) -> set[str]:
        return {m.name for tree in self.trees for m in metric_names(tree)}

    def needs_champion(self, index: int) -> bool:
        return any(m.champion for m in metric_names(self.trees[index]))

    def check_names(self, available: Iterable[str], note: str = "") -> None:
        """Raise UnknownMetricError for a name that is not among `available` (`note`: why
        these are the metrics, added to the message)."""
        known = set(available)
        for text, tree in zip(self.texts, self.trees, strict=True):
            unknown = sorted({m.source() for m in metric_names(tree) if m.name not in known})
            if unknown:
                raise UnknownMetricError(text, unknown, known, note)

    def evaluate(
        self, challenger: Mapping[str, float], champion: Mapping[str, float] | None
    ) -> list[ConditionResult]:
        """Each condition against the challenger's metrics and the champion's (None: no
        champion, so the conditions that name one are skipped)."""
        results = []
        for index, (text, tree) in enumerate(zip(self.texts, self.trees, strict=True)):
            if champion is None and self.needs_champion(index):
                results.append(
                    ConditionResult(text, None, note="skipped: there is no champion to compare")
                )
                continue
            comparisons: list[Comparison] = []
            passed = _truth(tree, challenger, champion or {}, comparisons)
            results.append(ConditionResult(text, passed, comparisons))
        return results


def _truth(node: Condition, mine: Mapping, theirs: Mapping, out: list[Comparison]) -> bool:
    if isinstance(node, Logic):
        values = [_truth(o, mine, theirs, out) for o in node.operands]  # every side is shown
        return all(values) if node.op == "and" else any(values)
    left, right, error = None, None, ""
    try:
        left = _value(node.left, mine, theirs)
        right = _value(node.right, mine, theirs)
    except _EvalError as exc:
        error = str(exc)
    passed = (
        not error
        and left is not None
        and right is not None
        and not (math.isnan(left) or math.isnan(right))
        and bool(COMPARISONS[node.op](left, right))
    )
    if not error and (left is None or right is None or math.isnan(left) or math.isnan(right)):
        error = "a side is not a number (nan)"
    out.append(
        Comparison(node.left.source(), node.op, node.right.source(), left, right, passed, error)
    )
    return passed


class _EvalError(Exception):
    pass


def _value(node: Expr, mine: Mapping, theirs: Mapping) -> float:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Metric):
        source = theirs if node.champion else mine
        if node.name not in source:
            who = "the champion" if node.champion else "the challenger"
            raise _EvalError(f"{node.source()} is not available for {who}")
        return float(source[node.name])
    if isinstance(node, Negate):
        return -_value(node.operand, mine, theirs)
    left, right = _value(node.left, mine, theirs), _value(node.right, mine, theirs)
    if node.op == "/" and right == 0:
        raise _EvalError(f"division by zero in {node.source()}")
    return ARITHMETIC[node.op](left, right)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"
