from mlflow.tracking import MlflowClient

from cellops.store.session import current_session

from .conftest import run


def test_step_runs_then_restores_from_cache(ip, capsys):
    run(ip, "n = 10")
    code = "%%step load --metrics total\nvalues = list(range(n))\ntotal = sum(values)"
    run(ip, code)
    ip.user_ns.pop("values")
    run(ip, code)
    assert ip.user_ns["values"] == list(range(10))
    assert "cached: restored values, total from run" in capsys.readouterr().out
    session = current_session()
    session.tracker.flush()
    client = MlflowClient(session.settings.tracking_uri)
    runs = client.search_runs([session.run.experiment_id], "tags.`cellops.step` = 'load'")
    assert sorted(r.data.tags["cellops.state"] for r in runs) == ["cached", "executed"]
    assert all(r.data.metrics["total"] == 45 for r in runs)


def test_library_code_is_not_an_input_but_the_projects_own_code_is(ip, project, capsys):
    (project / "helpers.py").write_text("def bonus():\n    return 1\n")
    run(
        ip,
        "import sys\nsys.path.insert(0, '.')\nfrom pathlib import Path\nfrom helpers import bonus",
    )
    code = "%%step uses\nname = Path('a/b.txt').name\ntotal = bonus()"
    run(ip, code)
    run(ip, code)
    assert "cached: restored" in capsys.readouterr().out
    # the project's function counts by its source: editing it runs the step again
    (project / "helpers.py").write_text("def bonus():\n    return 20\n")  # size differs too
    run(ip, "import importlib, helpers\nimportlib.reload(helpers)\nfrom helpers import bonus")
    run(ip, code)
    assert "cached: restored" not in capsys.readouterr().out
    assert ip.user_ns["total"] == 20
    session = current_session()
    session.tracker.flush()
    client = MlflowClient(session.settings.tracking_uri)
    runs = client.search_runs([session.run.experiment_id], "tags.`cellops.step` = 'uses'")
    assert {r.data.tags["cellops.inputs"] for r in runs} == {"bonus"}  # Path is not an input
