"""step_statuses: fresh, cached, stale, failed, never run, from step records and notebook cells."""

from __future__ import annotations

from typing import Any

from cellops.cache.hashing import code_digest, value_digest
from cellops.steps.notebook import StepCell
from cellops.steps.status import (
    CACHED,
    FAILED,
    FRESH,
    NEVER_RUN,
    STALE,
    StepStatus,
    changed_inputs,
    format_table,
    step_statuses,
)

SOURCES = {
    "load": "df = make(n)\n",
    "features": "X = df[['a']]\n",
    "train": "model = fit(X)\n",
}


def cells(**changed: str) -> list[StepCell]:
    sources = {**SOURCES, **changed}
    return [
        StepCell(index=i, name=name, args=name, source=source, cell_id=f"id-{name}")
        for i, (name, source) in enumerate(sources.items())
    ]


def record(name: str, state: str = "fresh", **extra: Any) -> dict[str, Any]:
    upstream = {"load": {}, "features": {"load": "key-load"}, "train": {"features": "key-features"}}
    return {
        "name": name,
        "state": state,
        "key": f"key-{name}",
        "code_digest": code_digest(SOURCES[name]),
        "inputs": {},
        "outputs": [],
        "upstream": upstream[name],
        "duration_s": 1.25,
        "metrics": {},
        "run_id": f"run-{name}",
        "finished_at": {"load": 1.0, "features": 2.0, "train": 3.0}[name],
        **extra,
    }


def all_fresh() -> dict[str, dict[str, Any]]:
    return {name: record(name) for name in SOURCES}


def states_of(statuses: list[StepStatus]) -> dict[str, str]:
    return {s.name: s.state for s in statuses}


def test_never_run_steps() -> None:
    statuses = step_statuses({}, cells())
    assert [s.name for s in statuses] == ["load", "features", "train"]
    assert all(s.state == NEVER_RUN and s.run_id is None for s in statuses)


def test_fresh_and_cached_steps_carry_their_record() -> None:
    states = all_fresh()
    states["features"]["state"] = "cached"
    states["train"]["metrics"] = {"f1": 0.91234}
    statuses = step_statuses(states, cells())
    assert states_of(statuses) == {"load": FRESH, "features": CACHED, "train": FRESH}
    train = statuses[2]
    assert train.run_id == "run-train"
    assert train.duration_s == 1.25
    assert train.metrics == {"f1": 0.91234}
    assert train.why == ""


def test_failed_and_killed_steps_are_failed() -> None:
    states = all_fresh()
    states["load"]["state"] = "failed"
    states["features"]["state"] = "killed"
    statuses = step_statuses(states, cells())
    assert statuses[0].state == FAILED and statuses[0].why == "last run failed"
    assert statuses[1].state == FAILED and statuses[1].why == "last run killed"


def test_code_change_makes_a_step_stale() -> None:
    statuses = step_statuses(all_fresh(), cells(train="model = fit(X, depth=3)\n"))
    assert states_of(statuses) == {"load": FRESH, "features": FRESH, "train": STALE}
    assert statuses[2].why == "code changed"


def test_comment_only_change_keeps_a_step_fresh() -> None:
    statuses = step_statuses(all_fresh(), cells(train="# retrain\nmodel = fit( X )\n"))
    assert states_of(statuses)["train"] == FRESH


def test_input_change_makes_a_step_stale() -> None:
    states = all_fresh()
    states["load"]["inputs"] = {"n": "digest-of-old-n"}
    seen: list[str] = []

    def inputs_changed(state: dict[str, Any]) -> list[str]:
        seen.append(state["name"])
        return ["n"] if state["name"] == "load" else []

    statuses = step_statuses(states, cells(), inputs_changed)
    assert seen == ["load", "features", "train"]
    assert statuses[0].state == STALE
    assert statuses[0].why == "input changed: n"
    # and everything downstream of it
    assert statuses[1].state == STALE and statuses[1].why == "upstream 'load' is stale"
    assert statuses[2].state == STALE and statuses[2].why == "upstream 'features' is stale"


def test_stale_propagates_downstream_from_a_code_change() -> None:
    statuses = step_statuses(all_fresh(), cells(load="df = make(n * 2)\n"))
    assert states_of(statuses) == {"load": STALE, "features": STALE, "train": STALE}
    assert statuses[0].why == "code changed"


def test_failed_upstream_makes_downstream_stale() -> None:
    states = all_fresh()
    states["features"]["state"] = "failed"
    statuses = step_statuses(states, cells())
    assert states_of(statuses) == {"load": FRESH, "features": FAILED, "train": STALE}
    assert statuses[2].why == "upstream 'features' is failed"


def test_never_run_upstream_makes_downstream_stale() -> None:
    states = all_fresh()
    del states["load"]
    statuses = step_statuses(states, cells())
    assert states_of(statuses) == {"load": NEVER_RUN, "features": STALE, "train": STALE}
    assert statuses[1].why == "upstream 'load' is never run"


def test_upstream_that_re_ran_with_another_key_makes_downstream_stale() -> None:
    states = all_fresh()
    states["load"]["key"] = "key-load-v2"  # load ran again with another result
    statuses = step_statuses(states, cells())
    assert states_of(statuses) == {"load": FRESH, "features": STALE, "train": STALE}
    assert statuses[1].why == "upstream 'load' re-ran"
    assert statuses[2].why == "upstream 'features' is stale"


def test_steps_only_in_records_come_last_in_finish_order() -> None:
    states = all_fresh()
    extra_late = {**record("load"), "name": "old_b", "finished_at": 9.0, "upstream": {}}
    extra_early = {**record("load"), "name": "old_a", "finished_at": 5.0, "upstream": {}}
    states.update(old_b=extra_late, old_a=extra_early)
    statuses = step_statuses(states, cells())
    assert [s.name for s in statuses] == ["load", "features", "train", "old_a", "old_b"]
    assert statuses[-1].state == FRESH  # no cell to compare its code with


def test_without_cells_records_are_listed_in_finish_order() -> None:
    states = all_fresh()
    statuses = step_statuses({k: states[k] for k in ("train", "load", "features")})
    assert [s.name for s in statuses] == ["load", "features", "train"]
    assert states_of(statuses) == {"load": FRESH, "features": FRESH, "train": FRESH}


def test_format_table_lists_every_step_with_aligned_columns() -> None:
    states = all_fresh()
    states["train"]["metrics"] = {"f1": 0.912345, "auc": 0.8}
    del states["load"]
    table = format_table(step_statuses(states, cells(features="X = df[['a', 'b']]\n")))
    lines = table.splitlines()
    assert lines[0].split() == [
        "step",
        "state",
        "last",
        "duration",
        "(s)",
        "metrics",
        "run",
        "id",
        "why",
    ]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 5
    load, features, train = lines[2:]
    assert load.split() == ["load", "never", "run"]
    assert features.startswith("features") and "stale" in features and "code changed" in features
    assert "run-features" in features and "1.25" in features
    assert "f1=0.9123, auc=0.8" in train and "upstream 'features' is stale" in train
    # columns line up: each state starts where the header's "state" does
    column = lines[0].index("state")
    assert all(line[column:].startswith(("never run", "stale")) for line in lines[2:])


def test_format_table_without_steps_says_how_to_make_one() -> None:
    assert "%%step NAME" in format_table([])


def test_changed_inputs_compares_digests_of_the_inputs_no_step_produces() -> None:
    states = all_fresh()
    states["load"]["inputs"] = {"n": value_digest(100), "seed": value_digest(7)}
    states["load"]["outputs"] = ["df"]
    states["features"]["inputs"] = {"df": "digest-of-df", "cols": value_digest(["a"])}

    kernel = changed_inputs(states, {"n": 200, "cols": ["a"]})  # a kernel without `seed`
    assert kernel(states["load"]) == ["n", "seed"]
    assert kernel(states["features"]) == []  # `df` is judged through `load`

    notebook_file = changed_inputs(states, {"n": 100, "cols": ["a", "b"]}, missing_changed=False)
    statuses = step_statuses(states, cells(), notebook_file)
    assert states_of(statuses) == {"load": FRESH, "features": STALE, "train": STALE}
    assert statuses[1].why == "input changed: cols"
