"""Reference profiles, drift from a profile versus from raw data, and `drift()` on bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from cellops.errors import CellopsUsageError
from cellops.monitoring import profile as profile_mod
from cellops.monitoring.api import drift
from cellops.monitoring.profile import ReferenceProfile, build_profile

# profile-based scores of columns with many distinct values, against raw-data scores
# (normed Wasserstein, Jensen-Shannon/PSI over Sturges bins, KS statistic): see native.py
TOLERANCE = 0.003


def frame(rng, n, shift=0.0, scale=1.0, new_category=False, missing=0.0):
    data = pd.DataFrame(
        {
            "x": rng.normal(shift, scale, n),
            "skewed": rng.lognormal(shift, scale, n),
            "count": rng.integers(0, 60, n) + int(shift * 10),
            "few": rng.integers(0, 4, n).astype(float),
            "city": rng.choice(["paris", "lyon", "nice"] + (["brest"] if new_category else []), n),
            "flag": rng.random(n) < 0.3 + shift / 4,
        }
    )
    data["city"] = data["city"].astype(object)
    if missing:
        data.loc[rng.random(n) < missing, "x"] = np.nan
    return data


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def scores(result):
    return {c.column: (c.test, c.score, c.drifted) for c in result.columns}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"shift": 0.08},
        {"shift": 0.5},
        {"scale": 1.6},
        {"new_category": True},
        {"missing": 0.2},
    ],
)
def test_profile_scores_match_raw_scores(rng, change):
    reference = frame(rng, 60_000)
    current = frame(rng, 40_000, **change)
    raw = scores(drift(reference, current))
    from_profile = scores(drift(build_profile(reference), current))
    for column, (test, score, drifted) in raw.items():
        p_test, p_score, p_drifted = from_profile[column]
        assert p_test == test, column
        assert p_score == pytest.approx(score, abs=TOLERANCE), column
        if abs(score - 0.1) > TOLERANCE:
            assert p_drifted == drifted, column


@pytest.mark.parametrize("stattest", ["ks", "psi", "jensenshannon"])
def test_forced_tests_from_profile_within_tolerance(rng, stattest):
    reference, current = frame(rng, 50_000), frame(rng, 30_000, shift=0.05)
    raw = drift(reference, current, columns=["x", "skewed"], stattest=stattest)
    prof = drift(build_profile(reference), current, columns=["x", "skewed"], stattest=stattest)
    for a, b in zip(raw.columns, prof.columns, strict=True):
        assert a.test == b.test == stattest
        if stattest == "ks":  # compare the statistics through the p-values' decision
            assert a.drifted == b.drifted
        else:
            assert b.score == pytest.approx(a.score, abs=TOLERANCE)


def test_small_reference_profile_is_exact(rng):
    reference, current = frame(rng, 900), frame(rng, 700, shift=0.15)
    raw = drift(reference, current)
    prof = drift(build_profile(reference), current)
    assert {c.test for c in raw.columns} >= {"ks", "chisquare", "z"}
    for a, b in zip(raw.columns, prof.columns, strict=True):
        assert (a.test, a.drifted) == (b.test, b.drifted)
        assert b.score == pytest.approx(a.score, rel=1e-9, abs=1e-12)


def test_psi_forced_uses_evidently_binning(rng):
    reference, current = frame(rng, 5000), frame(rng, 5000, shift=0.6)
    result = drift(reference, current, stattest="psi")
    assert {c.test for c in result.columns} == {"psi"}
    assert {c.threshold for c in result.columns} == {0.1}
    assert result.column("x").drifted and result.column("x").score > 0.1
    ref_x, cur_x = reference["x"].to_numpy(), current["x"].to_numpy()
    edges = np.histogram_bin_edges(np.concatenate([ref_x, cur_x]), bins="sturges")
    r = np.histogram(ref_x, edges)[0] / ref_x.size
    c = np.histogram(cur_x, edges)[0] / cur_x.size
    r[r == 0], c[c == 0] = 0.0001, 0.0001
    assert result.column("x").score == pytest.approx(np.sum((r - c) * np.log(r / c)))


def test_profile_json_round_trip(rng, tmp_path):
    prof = build_profile(frame(rng, 3000))
    path = prof.save(tmp_path / profile_mod.PROFILE_FILE)
    again = ReferenceProfile.load(path)
    assert again.to_dict() == json.loads(json.dumps(prof.to_dict()))
    assert again.columns["city"].counts == {"paris": pytest.approx(1000, abs=100)} | {
        k: again.columns["city"].counts[k] for k in ("lyon", "nice")
    }
    assert again.columns["x"].kind == "numeric" and len(again.columns["x"].quantiles) == 2001
    assert again.columns["count"].kind == "numeric"  # 60 distinct ints
    assert again.columns["flag"].kind == "categorical"
    assert drift(path, frame(rng, 2000)).engine == "native-profile"


@pytest.mark.parametrize("content", ['{"rows": 3}', "not json at all", "[1, 2]"])
def test_loading_a_non_profile_is_a_clear_error(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(CellopsUsageError, match="not a cellops reference profile"):
        ReferenceProfile.load(path)


def test_chunked_file_profiles_match_the_in_memory_profile(rng, tmp_path, monkeypatch):
    data = frame(rng, 50_000, missing=0.05)
    data.loc[:10, "x"] = np.inf
    data.to_parquet(tmp_path / "ref.parquet", row_group_size=7000)
    data.to_csv(tmp_path / "ref.csv", index=False)
    monkeypatch.setattr(profile_mod, "CHUNK_ROWS", 6000)
    whole = build_profile(data)
    for name in ("ref.parquet", "ref.csv"):
        chunked = build_profile(tmp_path / name)
        assert chunked.rows == whole.rows
        for column, expected in whole.columns.items():
            got = chunked.columns[column]
            assert (got.kind, got.count, got.missing, got.nonfinite) == (
                expected.kind, expected.count, expected.missing, expected.nonfinite,
            ), column  # fmt: skip
            assert got.counts == expected.counts and got.values == expected.values, column
            if expected.values is None and expected.quantiles is not None:  # many values
                q_got, q_exp = np.array(got.quantiles), np.array(expected.quantiles)
                # quantile error, in share of the data: at most ~1/1000
                ranks = np.searchsorted(np.sort(data[column].dropna()), q_got) / expected.count
                assert np.max(np.abs(ranks - np.linspace(0, 1, q_exp.size))) < 0.002, column
                assert got.std == pytest.approx(expected.std, rel=1e-9)
        current = frame(rng, 20_000, shift=0.3)
        a, b = drift(whole, current), drift(chunked, current)
        for ca, cb in zip(a.columns, b.columns, strict=True):
            assert (ca.test, ca.drifted) == (cb.test, cb.drifted)
            assert cb.score == pytest.approx(ca.score, abs=TOLERANCE)


# --- bad input ---------------------------------------------------------------------------


def test_different_columns_name_missing_and_extra(rng):
    reference = frame(rng, 100)
    current = frame(rng, 100).drop(columns=["few"]).assign(extra=1)
    with pytest.raises(CellopsUsageError) as err:
        drift(reference, current)
    message = str(err.value)
    assert "missing from the current data: few" in message
    assert "not in the reference: extra" in message
    assert "columns=[" in message and "--columns" in message
    ok = drift(reference, current, columns=["x", "city"])
    assert [c.column for c in ok.columns] == ["x", "city"]
    with pytest.raises(CellopsUsageError, match="not in the current data: few"):
        drift(reference, current, columns=["x", "few"])


def test_type_change_is_reported_as_drift_with_a_note(rng):
    reference = frame(rng, 2000)
    current = frame(rng, 2000)
    current["x"] = current["x"].map(lambda v: f"v{v:.3f}")
    for ref in (reference, build_profile(reference)):
        column = drift(ref, current).column("x")
        assert column.drifted
        assert "type changed: numeric in reference, text in current" in column.note


def test_empty_data_is_a_clear_error(rng):
    reference = frame(rng, 100)
    with pytest.raises(CellopsUsageError, match="current data has no rows"):
        drift(reference, reference.iloc[:0])
    with pytest.raises(CellopsUsageError, match="reference data has no rows"):
        drift(reference.iloc[:0], reference)
    with pytest.raises(CellopsUsageError, match="no rows"):
        build_profile(reference.iloc[:0])


def test_all_missing_columns_are_reported_not_crashed(rng):
    reference, current = frame(rng, 3000), frame(rng, 3000)
    current["x"] = np.nan
    current["city"] = None
    reference["few"] = np.nan
    current["few"] = np.nan
    for ref in (reference, build_profile(reference)):
        result = drift(ref, current)
        assert result.column("x").drifted and "all values missing in current" in (
            result.column("x").note
        )
        assert result.column("city").drifted
        few = result.column("few")
        assert not few.drifted and "reference and current" in few.note


def test_non_finite_numbers_are_missing_with_a_note(rng):
    reference, current = frame(rng, 5000), frame(rng, 5000)
    current.loc[:99, "x"] = np.inf
    current.loc[100:149, "x"] = -np.inf
    result = drift(reference, current)
    x = result.column("x")
    assert "inf/-inf treated as missing (0 in reference, 150 in current)" in x.note
    assert x.test == "wasserstein" and np.isfinite(x.score) and not x.drifted


def test_categorical_with_100k_distinct_values(rng):
    n = 300_000
    ids = pd.Series(rng.integers(0, 100_000, n)).map("u{}".format)
    reference = pd.DataFrame({"id": ids})
    current = pd.DataFrame({"id": ids.sample(frac=1, random_state=1).to_numpy()})
    renamed = pd.DataFrame({"id": ids.str.replace("u", "v")})
    raw = drift(reference, current).column("id")
    assert raw.test == "jensenshannon" and raw.score == pytest.approx(0.0, abs=1e-9)
    assert drift(reference, renamed).column("id").drifted
    prof = build_profile(reference)
    assert prof.columns["id"].other_count > 0 and len(prof.columns["id"].counts) == 10_000
    # the tail beyond the top 10 000 values is one bucket: merging bins only lowers JS
    lumped = drift(prof, current).column("id")
    assert lumped.test == "jensenshannon" and lumped.score <= raw.score + 1e-9
    assert drift(prof, renamed).column("id").drifted


def test_text_and_datetime_columns(rng):
    n = 2000
    reference = pd.DataFrame({"note": [f"t{i}" for i in range(n)], "x": rng.normal(size=n)})
    current = reference.assign(x=rng.normal(size=n))
    reference["when"] = current["when"] = pd.Timestamp("2024-01-01")
    result = drift(reference, current)
    assert result.column("note").kind == "text" and not result.column("note").drifted
    assert "when" not in [c.column for c in result.columns]
    assert "datetime" in result.extra["skipped"]["when"]


def test_unknown_engine_and_stattest_list_valid_ones(rng):
    data = frame(rng, 50)
    with pytest.raises(CellopsUsageError, match="native, evidently"):
        drift(data, data, engine="spark")
    with pytest.raises(CellopsUsageError, match="wasserstein, jensenshannon, psi"):
        drift(data, data, stattest="t-test")
    with pytest.raises(CellopsUsageError, match="share_threshold"):
        drift(data, data, share_threshold=2)
    with pytest.raises(CellopsUsageError, match="needs the raw reference data"):
        drift(build_profile(data), data, engine="evidently")


def test_forced_test_that_does_not_apply_falls_back_with_a_note(rng):
    reference, current = frame(rng, 3000), frame(rng, 3000)
    result = drift(reference, current, stattest="ks")
    city = result.column("city")
    assert city.test == "jensenshannon" and "ks applies to numeric columns only" in city.note
    assert result.column("x").test == "ks"
