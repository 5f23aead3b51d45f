from mlflow.tracking import MlflowClient

from cellops.session import current_session

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
