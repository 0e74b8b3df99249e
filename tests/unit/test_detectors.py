"""The anomaly detectors (models/) on synthetic campus meter data.

The meter reads every 15 minutes: a night base load, a daytime bump on
weekdays (smaller at weekends), a little outdoor-temperature dependence and
noise, from a seeded RNG. Four weeks train every detector, the fifth is scored.
Two faults are injected in the fifth week: a +40% load for six hours in the
night (in range for the whole series, so only the calendar-aware detectors can
see it) and readings stuck at 400 for two hours (far out of range: every
detector must see it). Also covered: no look-ahead, the state round trip
through joblib, constant, gappy and too-short series, the academic calendar
and the registry of names.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from campus.calendar import load_calendar
from models.base import SCORE_COLUMNS, ModelError
from models.detectors import DETECTORS, make
from models.features import calendar_frame, lag_frame
from models.seasonal import SeasonalBaseline

TZ = "Asia/Shanghai"
WEEK = 7 * 96
CALENDAR = Path(__file__).resolve().parents[2] / "config" / "calendar.yaml"
ALL = sorted(DETECTORS)
CALENDAR_AWARE = ["drift", "forest", "regressor", "seasonal"]


def meter(start: str, periods: int, seed: int, freq: str = "15min") -> pd.DataFrame:
    """A synthetic building power meter (kW) with its outdoor temperature."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=periods, freq=freq, tz="UTC")
    local = idx.tz_convert(TZ)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60
    weekend = local.day_of_week.to_numpy() >= 5
    bump = np.clip(np.sin((hour - 7) / 13 * np.pi), 0, None) * np.where(weekend, 0.4, 1.0)
    outdoor = 12 + 6 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 1, len(idx))
    value = 80 + 70 * bump + 0.8 * (outdoor - 12) + rng.normal(0, 3, len(idx))
    return pd.DataFrame({"value": value, "outdoor_c": outdoor}, index=idx)


@pytest.fixture(scope="module")
def weeks() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four training weeks and the fifth, all normal."""
    df = meter("2025-03-02 16:00", 5 * WEEK, seed=7)
    return df.iloc[: 4 * WEEK], df.iloc[4 * WEEK :]


def local_block(frame: pd.DataFrame, day: int, start: int, end: int) -> np.ndarray:
    """Rows on local weekday ``day`` from ``start`` o'clock to before ``end``."""
    local = frame.index.tz_convert(TZ)
    return np.asarray((local.day_of_week == day) & (local.hour >= start) & (local.hour < end))


def night_shift(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """+40% load on Wednesday 01:00-07:00 local."""
    out = frame.copy()
    block = local_block(out, 2, 1, 7)
    out.loc[block, "value"] *= 1.4
    return out, block


def stuck_high(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Readings stuck at 400 kW on Thursday 14:00-16:00 local."""
    out = frame.copy()
    block = local_block(out, 3, 14, 16)
    out.loc[block, "value"] = 400.0
    return out, block


@pytest.fixture(scope="module")
def fitted(weeks):
    """Every detector, trained once on the four weeks."""
    train, _ = weeks
    return {name: make(name, tz=TZ).fit(train) for name in ALL}


@pytest.fixture(scope="module")
def scored(fitted, weeks):
    """Scores of the fifth week with the night shift and the stuck readings."""
    _, test = weeks
    frame, night = night_shift(test)
    frame, stuck = stuck_high(frame)
    return frame, night, stuck, {name: det.score(frame) for name, det in fitted.items()}


# ------------------------------------------------------------------ output and detection


@pytest.mark.parametrize("name", ALL)
def test_output_has_the_score_columns_and_the_input_index(scored, name):
    frame, _, _, scores = scored
    out = scores[name]
    assert list(out.columns) == list(SCORE_COLUMNS)
    assert out.index.equals(frame.index)
    s = out["score"].to_numpy()
    assert np.all((s >= 0) & (s <= 1))
    band = out[["lower", "expected", "upper"]].to_numpy()
    assert np.isfinite(band).all()
    assert np.all(band[:, 0] <= band[:, 1]) and np.all(band[:, 1] <= band[:, 2])
    assert all(isinstance(d, str) and d for d in out["drivers"])


@pytest.mark.parametrize("name", ALL)
def test_a_normal_week_is_quiet(fitted, weeks, name):
    _, test = weeks
    s = fitted[name].score(test)["score"].to_numpy()
    assert (s > 0.5).mean() < 0.02


@pytest.mark.parametrize("name", ALL)
def test_normal_rows_around_the_faults_stay_quiet(fitted, scored, name):
    """Rows outside the faults score low, except those that look back at a
    fault (a row whose lookback window holds faulty readings is not normal)."""
    frame, night, stuck, scores = scored
    s = scores[name]["score"].to_numpy()
    fault_times = frame.index[night | stuck]
    reach = fitted[name].lookback()
    near = np.zeros(len(frame), dtype=bool)
    for t in fault_times:
        near |= (frame.index > t) & (frame.index <= t + reach)
    assert (s[~(night | stuck | near)] > 0.5).mean() < 0.02


@pytest.mark.parametrize("name", CALENDAR_AWARE)
def test_a_night_time_load_shift_is_flagged(scored, name):
    _, night, _, scores = scored
    s = scores[name]["score"].to_numpy()
    assert (s[night] > 0.5).mean() > 0.8


@pytest.mark.parametrize("name", ALL)
def test_stuck_high_readings_are_flagged(scored, name):
    _, _, stuck, scores = scored
    s = scores[name]["score"].to_numpy()
    assert (s[stuck] > 0.5).mean() > 0.8


def test_seasonal_drivers_name_the_hour_and_the_residual(scored):
    _, night, _, scores = scored
    first = scores["seasonal"]["drivers"].to_numpy()[night][0]
    assert first.startswith("hour_of_week=Wed 01:00; residual=+")
    assert first.endswith(" sd")


@pytest.mark.parametrize("name", ["regressor", "forest", "zscore", "static"])
def test_drivers_are_name_equals_signed_number(scored, name):
    _, _, stuck, scores = scored
    pattern = re.compile(r"^\w+=[+-]\d+(\.\d+)?(e[+-]\d+)?(; \w+=[+-]\d+(\.\d+)?(e[+-]\d+)?)*$")
    for d in scores[name]["drivers"].to_numpy()[stuck]:
        assert pattern.match(d), d


def test_forest_drivers_point_at_the_residual(scored):
    _, night, _, scores = scored
    drivers = scores["forest"]["drivers"].to_numpy()[night]
    assert all(d.startswith("residual=+") or "; residual=+" in d for d in drivers[4:])


# ------------------------------------------------------------------ no look-ahead, state


@pytest.mark.parametrize("name", ALL)
def test_scoring_never_looks_ahead(fitted, scored, name):
    frame, _, _, scores = scored
    k = 300
    changed = frame.copy()
    changed.iloc[k:, 0] = changed.iloc[k:, 0] * 3 + 50
    prefix = fitted[name].score(frame.iloc[:k])
    pd.testing.assert_frame_equal(prefix, scores[name].iloc[:k])
    pd.testing.assert_frame_equal(fitted[name].score(changed).iloc[:k], scores[name].iloc[:k])


@pytest.mark.parametrize("name", ALL)
def test_state_round_trip_through_joblib_gives_identical_scores(fitted, scored, name):
    frame, _, _, scores = scored
    buf = io.BytesIO()
    joblib.dump(fitted[name].state(), buf)
    buf.seek(0)
    state = joblib.load(buf)
    assert state["detector"] == name
    again = DETECTORS[name].from_state(state)
    pd.testing.assert_frame_equal(again.score(frame), scores[name])


def test_state_of_another_detector_is_refused(fitted):
    with pytest.raises(ModelError, match="static"):
        SeasonalBaseline.from_state(fitted["static"].state())


def test_state_of_another_version_is_refused(fitted):
    state = fitted["seasonal"].state()
    state["version"] = 99
    with pytest.raises(ModelError, match="version"):
        SeasonalBaseline.from_state(state)


@pytest.mark.parametrize("name", ALL)
def test_unfitted_detector_refuses_to_score(weeks, name):
    with pytest.raises(ModelError, match="not fitted"):
        make(name).score(weeks[1])


# ------------------------------------------------------------------ awkward series


@pytest.mark.parametrize("name", ALL)
def test_a_constant_series_gets_a_narrow_band(name):
    idx = pd.date_range("2025-03-03", periods=WEEK, freq="15min", tz="UTC")
    history = pd.DataFrame({"value": np.full(WEEK, 100.0)}, index=idx)
    det = make(name).fit(history)
    later = pd.DataFrame({"value": np.full(96, 100.0)}, index=idx[-96:] + pd.Timedelta(days=7))
    out = det.score(later)
    assert np.all(out["score"] < 0.5)
    assert np.all(out["lower"] < 100) and np.all(out["upper"] > 100)
    assert np.all(out["upper"] - out["lower"] < 10)
    later.iloc[50:, 0] = 150.0
    s = det.score(later)["score"].to_numpy()
    # the rolling z-score takes the new level in as its window fills: its onset is flagged
    assert np.all(s[50:52] > 0.5) if name == "zscore" else np.all(s[50:] > 0.5)


@pytest.mark.parametrize("name", ALL)
def test_missing_values_are_skipped_in_fit_and_scored_zero(weeks, name):
    train, test = weeks
    rng = np.random.default_rng(3)
    history = train.iloc[-2 * WEEK :].copy()
    history.loc[rng.random(len(history)) < 0.1, "value"] = np.nan
    history.iloc[100:200, 0] = np.nan
    history.iloc[300, 0] = -np.inf
    det = make(name, tz=TZ).fit(history)
    frame = test.iloc[:400].copy()
    gaps = rng.random(len(frame)) < 0.1
    gaps[150:170] = True
    frame.loc[gaps, "value"] = np.nan
    frame.iloc[7, 0] = np.inf  # a non-finite reading counts as missing
    gaps[7] = True
    out = det.score(frame)
    assert np.all(out["score"].to_numpy()[gaps] == 0)
    assert out["expected"].to_numpy()[gaps].tolist() == [pytest.approx(np.nan, nan_ok=True)] * int(
        gaps.sum()
    )
    assert np.all(out["drivers"].to_numpy()[gaps] == "")
    assert np.isfinite(out[["expected", "lower", "upper"]].to_numpy()[~gaps]).all()
    assert (out["score"].to_numpy()[~gaps] > 0.5).mean() < 0.05


@pytest.mark.parametrize("name", ALL)
def test_too_short_a_history_is_refused(weeks, name):
    with pytest.raises(ModelError, match="at least 50"):
        make(name).fit(weeks[0].iloc[:30])


@pytest.mark.parametrize("name", ALL)
def test_an_all_missing_history_is_refused(weeks, name):
    history = weeks[0].iloc[:500].copy()
    history["value"] = np.nan
    with pytest.raises(ModelError, match="0 non-missing"):
        make(name).fit(history)


def test_a_naive_index_is_refused():
    idx = pd.date_range("2025-03-03", periods=100, freq="15min")
    with pytest.raises(ModelError, match="UTC"):
        make("seasonal").fit(pd.DataFrame({"value": np.ones(100)}, index=idx))


def test_an_empty_frame_scores_to_an_empty_frame(fitted, weeks):
    for det in fitted.values():
        out = det.score(weeks[1].iloc[:0])
        assert list(out.columns) == list(SCORE_COLUMNS) and len(out) == 0


def test_a_nab_like_series_without_outdoor_works():
    rng = np.random.default_rng(11)
    idx = pd.date_range("2014-02-14", periods=4000, freq="5min", tz="UTC")
    value = 50 + 10 * np.sin(np.arange(4000) / 288 * 2 * np.pi) + rng.normal(0, 1, 4000)
    value[3500:3510] += 40
    frame = pd.DataFrame({"value": value}, index=idx)
    for name in ALL:
        out = make(name).fit(frame.iloc[:3000]).score(frame.iloc[3000:])
        s = out["score"].to_numpy()
        assert (s[500:510] > 0.5).mean() > 0.8, name
        assert (np.delete(s, np.arange(500, 510)) > 0.5).mean() < 0.02, name


# ------------------------------------------------------------------ calendar and features


@pytest.fixture(scope="module")
def calendar():
    return load_calendar(CALENDAR)


def campus_weeks(start: str, weeks: int, level: float, seed: int) -> pd.DataFrame:
    df = meter(start, weeks * WEEK, seed=seed)
    df["value"] *= level
    return df


def test_seasonal_baseline_separates_term_and_holidays(calendar):
    # winter break to 2025-02-16 (local), spring term from 2025-02-17: quiet in the break
    history = pd.concat(
        [
            campus_weeks("2025-01-26 16:00", 3, 0.4, seed=1),
            campus_weeks("2025-02-16 16:00", 5, 1.0, seed=2),
        ]
    )
    term = campus_weeks("2025-03-23 16:00", 1, 1.0, seed=3)
    summer = campus_weeks("2025-07-06 16:00", 1, 0.4, seed=4)
    frame = pd.concat([term, summer])
    in_summer = np.arange(len(frame)) >= len(term)

    det = SeasonalBaseline(calendar=calendar).fit(history)
    out = det.score(frame)
    s = out["score"].to_numpy()
    assert (s[in_summer] > 0.5).mean() < 0.02
    assert (s[~in_summer] > 0.5).mean() < 0.02
    assert "; period=holidays;" in out["drivers"].to_numpy()[in_summer][0]
    assert out["expected"][in_summer].mean() < 0.6 * out["expected"][~in_summer].mean()

    blind = SeasonalBaseline(tz=TZ).fit(history)
    assert (blind.score(frame)["score"].to_numpy()[in_summer] > 0.5).mean() > 0.5

    again = SeasonalBaseline.from_state(joblib.load(_dumped(det.state())))
    pd.testing.assert_frame_equal(again.score(frame), out)


def _dumped(state: dict) -> io.BytesIO:
    buf = io.BytesIO()
    joblib.dump(state, buf)
    buf.seek(0)
    return buf


def test_calendar_frame_uses_the_calendar_time_zone(calendar):
    # 2025-02-16 16:30 UTC is Monday 2025-02-17 00:30 in Shanghai: first day of term
    idx = pd.DatetimeIndex(["2025-02-16 15:30", "2025-02-16 16:30"], tz="UTC")
    cal = calendar_frame(idx, calendar, tz="UTC")
    assert cal["period"].tolist() == [2, 0]
    assert cal["hour_of_week"].tolist() == [6 * 24 + 23, 0]
    assert cal["weekend"].tolist() == [1, 0]
    assert calendar_frame(idx)["period"].tolist() == [0, 0]
    assert calendar_frame(idx, tz=TZ)["hour"].tolist() == [23, 0]


def test_closures_count_as_holidays(calendar):
    idx = pd.DatetimeIndex(["2025-04-04 04:00", "2025-04-08 04:00"], tz="UTC")
    assert calendar_frame(idx, calendar)["period"].tolist() == [2, 0]


def test_lag_features_use_only_earlier_rows():
    idx = pd.date_range("2025-03-03", periods=3 * 96, freq="15min", tz="UTC")
    values = pd.Series(np.arange(len(idx), dtype=float), index=idx)
    lags = lag_frame(values)
    assert np.isnan(lags["lag_1"].iloc[0]) and lags["lag_1"].iloc[5] == 4.0
    assert lags["lag_1d"].iloc[96 + 7] == 7.0 and np.isnan(lags["lag_1d"].iloc[95])
    assert lags["lag_1w"].isna().all()
    assert np.isnan(lags["mean_1h"].iloc[3]) and lags["mean_1h"].iloc[4] == 1.5
    assert np.isnan(lags["mean_1d"].iloc[95]) and lags["mean_1d"].iloc[96] == 47.5
    changed = values.copy()
    changed.iloc[200:] = -1000.0
    pd.testing.assert_frame_equal(lag_frame(changed).iloc[:201], lags.iloc[:201])


def test_lag_at_the_same_time_yesterday_tolerates_a_missing_reading():
    idx = pd.date_range("2025-03-03", periods=2 * 96, freq="15min", tz="UTC")
    values = pd.Series(np.arange(len(idx), dtype=float), index=idx)
    values.iloc[10] = np.nan
    lags = lag_frame(values.drop(idx[11]))
    assert lags.loc[idx[96 + 10], "lag_1d"] == 9.0  # nearest earlier reading
    assert lags.loc[idx[96 + 11], "lag_1d"] == 9.0


# ------------------------------------------------------------------ registry of names


def test_every_detector_is_registered_by_its_name():
    assert sorted(DETECTORS) == ["drift", "forest", "regressor", "seasonal", "static", "zscore"]
    assert all(cls.name == name for name, cls in DETECTORS.items())


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelError) as err:
        make("nope")
    for name in DETECTORS:
        assert name in str(err.value)


def test_an_unknown_parameter_is_a_model_error():
    with pytest.raises(ModelError, match="seasonal"):
        make("seasonal", window=3)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scoring_the_last_rows_equals_scoring_all(name: str) -> None:
    """Online scoring asks for the last row only; it must be the same answer."""
    history = meter("2026-10-12", 3 * 7 * 96, seed=5)
    model = make(name).fit(history.iloc[: len(history) * 2 // 3])
    tail = history.iloc[len(history) * 2 // 3 :]
    pd.testing.assert_frame_equal(model.score_last(tail, 5), model.score(tail).iloc[-5:])


@pytest.mark.parametrize("with_calendar", [False, True], ids=["plain", "calendar"])
@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_online_records_equal_the_scored_frame(name: str, with_calendar: bool) -> None:
    """score_records (what online scoring calls, without pandas for the
    detectors that can) gives each of the last rows exactly its scored row."""
    calendar = load_calendar(CALENDAR) if with_calendar else None
    history = meter("2026-09-28", 3 * 7 * 96, seed=5)
    history.loc[history.index[-3], "value"] = np.nan  # a missing reading among the last
    model = make(name, calendar=calendar, tz=TZ).fit(history.iloc[: len(history) * 2 // 3])
    tail = history.iloc[len(history) * 2 // 3 :][["value"]]  # online readings carry no weather
    ns = tail.index.as_unit("ns").asi8
    for n in (1, 5, 40):  # a reading alone, a short run (row by row), a long one (pandas)
        got = model.score_records(ns, tail["value"].to_numpy(), n)
        want = model.score(tail).iloc[-n:]
        assert [r["drivers"] for r in got] == want["drivers"].tolist()
        for column in ("expected", "lower", "upper", "score"):
            np.testing.assert_allclose(
                [r[column] for r in got], want[column].to_numpy(), rtol=0, atol=1e-12
            )


def test_the_local_clock_read_row_by_row_equals_pandas_across_dst() -> None:
    from models.features import SMALL, calendar_columns

    calendar = load_calendar(CALENDAR)
    # every 37 minutes through 2026 in a zone with daylight saving
    ns = pd.date_range("2026-01-01", "2027-01-01", freq="37min", tz="UTC").as_unit("ns").asi8
    for zone in ("America/New_York", TZ):
        whole = calendar_columns(ns, None, zone)
        for start in range(0, len(ns), 997):
            part = calendar_columns(ns[start : start + SMALL], None, zone)
            for column, values in part.items():
                np.testing.assert_array_equal(values, whole[column][start : start + SMALL])
    # a nanosecond before an hour is still the hour before, as pandas says
    hour = pd.Timestamp("2026-03-08 07:00", tz="UTC").value  # 02:00 EST, the DST jump
    edge = np.array([hour - 1, hour, hour + 1], dtype=np.int64)
    both = calendar_columns(np.tile(edge, SMALL), None, "America/New_York")  # via pandas
    alone = calendar_columns(edge, None, "America/New_York")  # row by row
    for column, values in alone.items():
        np.testing.assert_array_equal(values, both[column][:3])
    assert list(alone["hour"]) == [1, 3, 3]
    # and the academic period, looked up per local date
    whole = calendar_columns(ns, calendar)
    for start in range(0, len(ns), 997):
        part = calendar_columns(ns[start : start + SMALL], calendar)
        np.testing.assert_array_equal(part["period"], whole["period"][start : start + SMALL])
