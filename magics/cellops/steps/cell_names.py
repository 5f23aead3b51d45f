"""Which names a cell reads before binding them (its inputs) and which it binds (its outputs).

Static analysis of the cell's syntax tree, in evaluation order: `df = df.dropna()` reads `df`
and writes it, `x = 1; y = x` reads nothing. Names a function or class body reads from the
global scope count as read. Assigning to `df["col"]` or `obj.attr` counts as writing `df` or
`obj`, since the object changes. Mutations through method calls (`rows.append(x)`) cannot be
seen here: the engine finds them by digesting the inputs again after the cell.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class CellNames:
    reads: tuple[str, ...]
    writes: tuple[str, ...]


def analyze_cell(source: str) -> CellNames:
    tree = ast.parse(source)
    scanner = _Scanner()
    for statement in tree.body:
        scanner.visit(statement)
    return CellNames(tuple(scanner.reads), tuple(scanner.writes))


def _local_names(node: ast.AST) -> set[str]:
    """Names bound inside a function, lambda or comprehension (its own scope)."""
    names: set[str] = set()
    args = getattr(node, "args", None)
    if isinstance(args, ast.arguments):
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                names.add(arg.arg)
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            names.add(child.id)
        elif isinstance(child, ast.arg):  # parameters of nested functions, methods, lambdas
            names.add(child.arg)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if child is not node:
                names.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            names.update(_imported_names(child))
        elif isinstance(child, ast.ExceptHandler) and child.name:
            names.add(child.name)
    return names


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [(alias.asname or alias.name.split(".")[0]) for alias in node.names if alias.name != "*"]


def _walrus_targets(node: ast.AST) -> list[str]:
    """Names bound by `:=` inside a comprehension, not counting those inside a lambda."""
    names = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name):
            names.append(child.target.id)
        if not isinstance(child, ast.Lambda):
            names.extend(_walrus_targets(child))
    return names


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: list[str] = []
        self.writes: list[str] = []

    def _read(self, name: str) -> None:
        if name not in self.bound and name not in self.reads:
            self.reads.append(name)

    def _write(self, name: str) -> None:
        self.bound.add(name)
        if name not in self.writes:
            self.writes.append(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._write(node.id)

    def _mutated_base(self, node: ast.AST) -> None:
        while isinstance(node, (ast.Subscript, ast.Attribute)):
            node = node.value
        if isinstance(node, ast.Name):
            self._read(node.id)
            if node.id not in self.writes:
                self.writes.append(node.id)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.visit(node.slice)
            self._mutated_base(node)
        else:
            self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._mutated_base(node)
        else:
            self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
            self._write(node.target.id)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name in _imported_names(node):
            self._write(name)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._write(node.name)
        for statement in node.body:
            self.visit(statement)

    def _visit_scope(self, node: ast.AST, body: list[ast.AST]) -> None:
        local = _local_names(node)
        for child in body:
            for sub in ast.walk(child):
                is_read = isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
                if is_read and sub.id not in local:
                    self._read(sub.id)

    def _visit_signature(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._visit_signature(node)
        self._write(node.name)
        self._visit_scope(node, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_signature(node)
        self._visit_scope(node, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
            self.visit(expr)
        self._write(node.name)
        self._visit_scope(node, node.body)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        self._visit_scope(node, [node])
        for target in _walrus_targets(node):  # PEP 572: binds in the enclosing scope
            self._write(target)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def visit_Global(self, node: ast.Global) -> None:  # noqa: ARG002 - ast.NodeVisitor's signature
        return None
