"""analyze_cell: the names a cell reads before binding them (inputs) and the names it binds."""

from __future__ import annotations

import pytest

from cellops.steps.cell_names import analyze_cell


def names(source: str) -> tuple[set[str], set[str]]:
    result = analyze_cell(source)
    return set(result.reads), set(result.writes)


def test_read_then_rebind_is_both_input_and_output() -> None:
    assert names("df = df.dropna()") == ({"df"}, {"df"})


def test_name_bound_before_it_is_read_is_not_an_input() -> None:
    assert names("x = 1; y = x") == (set(), {"x", "y"})
    assert names("x = 1\ny = x * 2\nz = y + x") == (set(), {"x", "y", "z"})


def test_read_before_write_in_the_same_cell_is_an_input() -> None:
    reads, writes = names("print(x)\nx = 2")
    assert "x" in reads
    assert writes == {"x"}


def test_order_of_reads_and_writes_is_first_seen() -> None:
    result = analyze_cell("b = a + c\na = 1\nd = b")
    assert result.reads == ("a", "c")
    assert result.writes == ("b", "a", "d")


def test_imports_bind_names_and_read_nothing() -> None:
    source = "import numpy as np\nimport os.path\nfrom json import dumps as d, loads\nnp.zeros(1)"
    assert names(source) == (set(), {"np", "os", "d", "loads"})


def test_star_import_binds_nothing_visible() -> None:
    assert names("from math import *") == (set(), set())


def test_function_body_global_reads_count_but_locals_and_arguments_do_not() -> None:
    source = (
        "def f(a, *args, k=1, **kw):\n"
        "    local = a + threshold\n"
        "    return scale(local, *args, k, **kw)\n"
    )
    assert names(source) == ({"threshold", "scale"}, {"f"})


def test_function_defaults_and_decorators_are_read_at_definition() -> None:
    source = "@register\ndef f(a=default_a):\n    return a\n"
    assert names(source) == ({"register", "default_a"}, {"f"})


def test_nested_function_reads_enclosing_locals_without_inputs() -> None:
    source = "def outer():\n    n = 1\n    def inner():\n        return n + m\n    return inner\n"
    assert names(source) == ({"m"}, {"outer"})


def test_async_function_body_reads_count() -> None:
    assert names("async def f():\n    return await fetch(url)\n") == ({"fetch", "url"}, {"f"})


def test_class_bases_and_body_reads_count() -> None:
    source = (
        "class Model(Base, metaclass=Meta):\n"
        "    rate = default_rate\n"
        "    doubled = rate * 2\n"
        "    def predict(self, x):\n"
        "        return x * weights\n"
    )
    assert names(source) == ({"Base", "Meta", "default_rate", "weights"}, {"Model"})


def test_comprehension_variables_are_not_inputs() -> None:
    assert names("ys = [v * 2 for v in xs if v > cutoff]") == ({"xs", "cutoff"}, {"ys"})
    assert names("s = {k: v for k, v in pairs}") == ({"pairs"}, {"s"})
    assert names("t = sum(x for row in grid for x in row)") == ({"sum", "grid"}, {"t"})
    assert names("u = {w for w in words}") == ({"words"}, set("u"))


def test_comprehension_variable_does_not_leak_as_output() -> None:
    _, writes = names("ys = [i for i in range(3)]")
    assert "i" not in writes


@pytest.mark.parametrize(
    ("source", "expected_reads"),
    [
        ('df["a"] = 1', {"df"}),
        ("obj.x = 2", {"obj"}),
        ("obj.inner.x = 2", {"obj"}),
        ("df.loc[mask, 'a'] = 0", {"df", "mask"}),
        ("table[key] = value", {"table", "key", "value"}),
        ('del df["a"]', {"df"}),
    ],
)
def test_subscript_and_attribute_assignment_read_and_write_the_base(
    source: str, expected_reads: set[str]
) -> None:
    reads, writes = names(source)
    assert reads == expected_reads
    base = source.removeprefix("del ").split("[")[0].split(".")[0].strip()
    assert writes == {base}


def test_augmented_assignment_reads_and_writes() -> None:
    assert names("n += 1") == ({"n"}, {"n"})
    assert names("n = 0\nn += step") == ({"step"}, {"n"})
    assert names('df["a"] += delta') == ({"df", "delta"}, {"df"})
    assert names("obj.count -= 1") == ({"obj"}, {"obj"})


def test_annotated_assignment() -> None:
    assert names("x: int = y") == ({"y"}, {"x"})


def test_for_loop_target_is_written_not_read() -> None:
    source = "for i, row in enumerate(rows):\n    total = row\nelse:\n    done = i\n"
    assert names(source) == ({"enumerate", "rows"}, {"i", "row", "total", "done"})


def test_with_target_is_written() -> None:
    source = "with open(path) as fh:\n    text = fh.read()\n"
    assert names(source) == ({"open", "path"}, {"fh", "text"})


def test_except_name_is_written_and_exception_type_read() -> None:
    source = "try:\n    risky()\nexcept ValueError as err:\n    message = str(err)\n"
    assert names(source) == ({"risky", "ValueError", "str"}, {"err", "message"})


def test_lambda_parameters_are_local_and_free_names_are_read() -> None:
    assert names("f = lambda a, b=offset: a + b + c") == ({"offset", "c"}, {"f"})


def test_walrus_binds_in_the_cell() -> None:
    assert names("if (m := k) > 1:\n    r = m\n") == ({"k"}, {"m", "r"})


def test_walrus_in_comprehension_binds_in_the_cell() -> None:
    # PEP 572: the target of := inside a comprehension is bound in the enclosing scope
    reads, writes = names("ys = [last := f(v) for v in xs]")
    assert reads == {"f", "xs"}
    assert writes == {"ys", "last"}


def test_walrus_inside_lambda_stays_local() -> None:
    assert names("g = lambda: (z := 1)") == (set(), {"g"})


def test_global_statement_in_function_does_not_write_at_definition() -> None:
    assert names("def f():\n    global G\n    G = 1\n") == (set(), {"f"})


def test_syntax_error_is_raised() -> None:
    with pytest.raises(SyntaxError):
        analyze_cell("x = = 1")


def test_parameters_of_nested_functions_and_lambdas_are_not_inputs() -> None:
    source = (
        "def outer(data):\n"
        "    def inner(row):\n"
        "        return row * factor\n"
        "    return list(map(lambda item: inner(item), data))\n"
    )
    assert names(source) == ({"factor", "list", "map"}, {"outer"})
