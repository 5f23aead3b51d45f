"""`cellops export dvc NOTEBOOK`: the notebook's file-producing steps as `dvc.yaml` stages.

One stage per step that declares `--files-out`: deps are the notebook and the input files of
the step and of the steps it takes variables from; params are the notebook parameters they
read, kept in `params.yaml`; outs are the declared output files. Every stage's command
re-executes the notebook through `cellops run`, where the step cache restores whatever did not
change, so a stage rebuilds its own outputs without redoing the other steps' work.

Outputs a step had put under DVC with a `.dvc` file are handed over to their stage. A stage
whose step's last run matches the current notebook, parameters and input files is committed
(`dvc commit`), so `dvc status` starts clean; the others are left for `dvc repro`.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import atomic_write_text
from ..config import Settings
from ..data import dvc
from ..data.graph import GraphStep, StepGraph, graph_from_notebook
from ..errors import CellopsUsageError
from .params import load_parameter_file

DEFAULT_PARAMS = "params.yaml"
DESC_PREFIX = "cellops step"


@dataclass
class ExportReport:
    dvc_yaml: Path
    params_file: Path
    stages: dict[str, str] = field(default_factory=dict)  # stage -> step
    params_added: list[str] = field(default_factory=list)
    params_skipped: list[str] = field(default_factory=list)  # defaults that are not literals
    handed_over: list[str] = field(default_factory=list)  # .dvc files now owned by a stage
    removed: list[str] = field(default_factory=list)  # this notebook's stages that went away
    committed: list[str] = field(default_factory=list)
    to_build: dict[str, str] = field(default_factory=dict)  # stage -> why it is not current


def stage_name(step: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", step)


def _desc(step: str, notebook: str) -> str:
    return f"{DESC_PREFIX} '{step}' of {notebook}"


def export_dvc(notebook: Path, settings: Settings, params_file: Path | None = None) -> ExportReport:
    from ..data.project import require_versioning
    from .params import inspect_parameters

    root = settings.root
    require_versioning(root)
    notebook = notebook.resolve()
    spec = inspect_parameters(notebook)  # also: a missing or broken notebook is named here
    if not notebook.is_relative_to(root):
        raise CellopsUsageError(f"{notebook} is outside the project {root}; DVC cannot use it")
    graph = graph_from_notebook(notebook, root)
    producing = [step for step in graph.steps if step.files_out]
    if not producing:
        raise CellopsUsageError(
            f"no step of {graph.notebook} declares --files-out, so there is no stage to write; "
            "declare the files a step writes, for example: %%step clean --files-out data/clean.csv"
        )
    _check_outputs(producing, root)
    params_path = (params_file or Path(DEFAULT_PARAMS)).resolve()
    if not params_path.is_relative_to(root):
        params_path = root / (params_file or Path(DEFAULT_PARAMS))
    report = ExportReport(root / "dvc.yaml", params_path)
    values = _write_params(params_path, spec, graph.notebook, report)
    params_label = params_path.relative_to(root).as_posix()
    stages = {
        stage_name(step.name): _stage(graph, step, params_label, set(values)) for step in producing
    }
    report.stages = {stage_name(step.name): step.name for step in producing}
    pointers = [f"{out}.dvc" for step in producing for out in step.files_out]
    report.handed_over = [p for p in pointers if (root / p).is_file()]
    if report.handed_over:
        dvc.stop_tracking(root, report.handed_over)
    report.removed = _write_dvc_yaml(root / "dvc.yaml", graph.notebook, stages)
    current, why = _current_stages(settings, graph, producing, values)
    report.to_build = why
    if current:
        dvc.commit(root, current)
        report.committed = current
    return report


def _check_outputs(producing: list[GraphStep], root: Path) -> None:
    owners: dict[str, str] = {}
    for step in producing:
        for out in step.files_out:
            if Path(out).is_absolute():
                raise CellopsUsageError(
                    f"step '{step.name}' writes {out}, outside the project {root}; "
                    "a DVC stage can only write inside it"
                )
            if out in owners:
                raise CellopsUsageError(
                    f"steps '{owners[out]}' and '{step.name}' both declare --files-out {out}; "
                    "a file can be the output of one DVC stage only"
                )
            owners[out] = step.name


def _literal(source: str) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None
    return True, list(value) if isinstance(value, tuple) else value


def _write_params(path: Path, spec: Any, notebook: str, report: ExportReport) -> dict[str, Any]:
    """The parameter values in the params file, after adding the notebook's missing ones."""
    import yaml

    existing = load_parameter_file(path) if path.is_file() else {}
    foreign = sorted(set(existing) - set(spec.parameters))
    if foreign:
        raise CellopsUsageError(
            f"{path.name} holds {', '.join(foreign)}, which {notebook} does not take as "
            "parameters (`cellops run -f` would refuse them); remove them, or give this "
            "notebook its own file: cellops export dvc NOTEBOOK --params-file params/NAME.yaml"
        )
    values = dict(existing)
    for name, parameter in spec.parameters.items():
        if name in values:
            continue
        ok, value = _literal(parameter.default_source)
        if not ok:
            report.params_skipped.append(name)
            continue
        values[name] = value
        report.params_added.append(name)
    if report.params_added or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(values, sort_keys=False, default_flow_style=False))
    return values


def _stage(graph: StepGraph, step: GraphStep, params_label: str, known: set[str]) -> dict:
    chain = graph.with_upstream(step.name)
    deps = [graph.notebook]
    for other in chain:
        deps += [f for f in other.files_in if f not in step.files_out and f not in deps]
    params = [p for p in dict.fromkeys(p for s in chain for p in s.params) if p in known]
    stage: dict[str, Any] = {
        "desc": _desc(step.name, graph.notebook),
        "cmd": (
            f"cellops run {shlex.quote(graph.notebook)} -f {shlex.quote(params_label)} "
            "--no-progress"
        ),
        "deps": deps,
    }
    if params:
        stage["params"] = params if params_label == DEFAULT_PARAMS else [{params_label: params}]
    stage["outs"] = list(step.files_out)
    return stage


def _write_dvc_yaml(path: Path, notebook: str, stages: dict[str, dict]) -> list[str]:
    """Put `stages` in dvc.yaml (keeping its other stages and comments); stages removed."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(path.read_text()) if path.is_file() else None
    document = document if document is not None else {}
    existing = document.setdefault("stages", {})
    mine = f"{DESC_PREFIX} '"
    for name in stages:
        if name in existing and not str(existing[name].get("desc", "")).startswith(mine):
            raise CellopsUsageError(
                f"dvc.yaml already has a stage '{name}' that cellops did not write; rename the "
                "step or that stage"
            )
        if name in existing and not str(existing[name].get("desc", "")).endswith(f" {notebook}"):
            raise CellopsUsageError(
                f"dvc.yaml's stage '{name}' comes from another notebook "
                f"({existing[name].get('desc')}); give the step another name"
            )
    removed = [
        name
        for name, stage in existing.items()
        if name not in stages
        and str((stage or {}).get("desc", "")).startswith(mine)
        and str(stage.get("desc", "")).endswith(f" of {notebook}")
    ]
    for name in removed:
        del existing[name]
    for name, stage in stages.items():
        existing[name] = stage
    text = io.StringIO()
    yaml.dump(document, text)
    atomic_write_text(path, text.getvalue())
    return removed


def _current_stages(
    settings: Settings, graph: StepGraph, producing: list[GraphStep], values: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """Stages whose step's last run used today's code, parameters and input files."""
    from ..cache.hashing import value_digest
    from ..cache.statcache import stat_cache_for
    from ..data.dvchash import dvc_md5
    from ..data.hooks import file_path, step_files
    from ..steps.notebook import read_step_cells
    from ..steps.state import load_step_states
    from ..steps.status import CACHED, FRESH, step_statuses

    states = load_step_states(settings, graph.notebook)
    cells = read_step_cells(settings.root / graph.notebook)
    statuses = {s.name: s for s in step_statuses(states, cells)}
    files = step_files(settings, graph.notebook)
    cache = stat_cache_for(settings.state_dir)

    def why_not(step: GraphStep) -> str | None:
        for other in graph.with_upstream(step.name):
            status = statuses.get(other.name)
            if status is None or status.state not in (FRESH, CACHED):
                reason = (status.why or status.state) if status else "never run"
                return f"step '{other.name}': {reason}"
            used = states[other.name].get("inputs") or {}
            for name in other.params:
                if name in values and used.get(name) != value_digest(values[name]):
                    return f"parameter {name} differs from the last run of '{other.name}'"
            record = files.get(other.name)
            if record is None:
                return f"no record of the files '{other.name}' used"
            for label in other.files_in:
                path = file_path(settings.root, label)
                if not path.exists() or record["files_in"].get(label) != dvc_md5(path, cache):
                    return f"{label} changed since '{other.name}' ran"
        for label in step.files_out:
            path = file_path(settings.root, label)
            if not path.exists():
                return f"{label} is missing"
            if files[step.name]["files_out"].get(label) != dvc_md5(path, cache):
                return f"{label} is not what '{step.name}' last wrote"
        return None

    current, why = [], {}
    for step in producing:
        reason = why_not(step)
        if reason is None:
            current.append(stage_name(step.name))
        else:
            why[stage_name(step.name)] = reason
    cache.save()
    return current, why
