"""The one interface every anomaly detector has.

A detector learns one metric of one device (or one NAB series) from a history
frame and scores new readings in bulk:

* ``fit(history)``: ``history`` is a :class:`pandas.DataFrame` with a UTC
  :class:`~pandas.DatetimeIndex` (sorted, unique) and a float column
  ``value``; optional context columns (``outdoor_c``, the outdoor temperature)
  may be present. Returns the detector.
* ``score(frame)``: the same shape in, a :class:`Scores` frame out, one row per
  input row, same index: ``expected`` (what the detector expected),
  ``lower``/``upper`` (its band), ``score`` in [0, 1] (higher is stranger; 0.5
  is the edge of the band) and ``drivers`` (the features that moved the score
  most, ``"name=+1.2; name=-0.4"``). A row may only use the rows before it and
  itself (no look-ahead), so scoring a frame at once equals scoring it row by
  row.
* ``state()`` / ``from_state()``: plain data for :mod:`models.registry` to save
  (numbers, strings, lists, dicts, numpy arrays, scikit-learn estimators).

Calendar context (hour of week, academic period) comes from the index and an
optional :class:`~campus.calendar.AcademicCalendar` given to the constructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar
from campus.errors import CampusError

SCORE_COLUMNS = ("expected", "lower", "upper", "score", "drivers")


class ModelError(CampusError):
    """A model that cannot be trained, loaded or used (the message says why)."""


class Detector(ABC):
    """Learns what is normal for one series and scores how far readings are from it."""

    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump when state() changes shape: old files are refused
    _fit: dict[str, Any] | None = None  # what fit() learned
    PARAMS: ClassVar[tuple[str, ...]] = ()  # constructor arguments saved with the state
    tz: str = "UTC"
    calendar: AcademicCalendar | None = None

    def _params(self) -> dict[str, Any]:
        """The constructor arguments (but the calendar), as :meth:`state` saves them."""
        return {"tz": self.tz, **{name: getattr(self, name) for name in self.PARAMS}}

    def _fitted(self) -> dict[str, Any]:
        """What :meth:`fit` learned; :class:`ModelError` before it ran."""
        if self._fit is None:
            raise ModelError(f"{self.name} detector is not fitted")
        return self._fit

    @abstractmethod
    def fit(self, history: pd.DataFrame) -> Detector:
        """Learn from ``history`` (a ``value`` column on a UTC DatetimeIndex)."""

    @abstractmethod
    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Expected value, band, score in [0, 1] and drivers for each row of ``frame``."""

    def lookback(self) -> pd.Timedelta:
        """How far before a row :meth:`score` looks to score it (its lag
        features); online scoring passes no more past than this."""
        return pd.Timedelta(days=8)

    def score_last(self, frame: pd.DataFrame, n: int = 1) -> pd.DataFrame:
        """The scores of the last ``n`` rows of ``frame``; the rows before them
        are only context (for lag features). Equal to ``score(frame).iloc[-n:]``;
        a detector may compute it faster (online scoring calls it per reading)."""
        return self.score(frame).iloc[-n:]

    def score_records(self, ns: np.ndarray, values: np.ndarray, n: int) -> list[dict[str, Any]]:
        """The scores of the last ``n`` of these readings (UTC epoch
        nanoseconds, values; the ones before are context), one dict of
        :data:`SCORE_COLUMNS` each: what online scoring asks for. Equal to
        :meth:`score_last`; a detector may compute it without pandas."""
        frame = readings_frame(ns, values)
        records: list[dict[str, Any]] = self.score_last(frame, n).to_dict("records")
        return records

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs to rebuild the fitted detector."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        """The fitted detector saved by :meth:`state`."""


def readings_frame(ns: Any, values: Any) -> pd.DataFrame:
    """Readings (UTC epoch nanoseconds, values) as a detector's frame."""
    return pd.DataFrame(
        {"value": np.asarray(values, dtype=float)},
        index=pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True),
    )


def band_score(value: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A score in [0, 1] from where ``value`` lies against its band: 0 at its
    centre, 0.5 at either edge, towards 1 the further outside (half a band
    width beyond the edge: about 0.82)."""
    centre = (lower + upper) / 2
    half = np.maximum((upper - lower) / 2, 1e-9)
    d = np.abs(value - centre) / half  # 1 at the edge
    out = np.where(d <= 1, 0.5 * d, 1 - 0.5 * np.exp(-(d - 1)))
    return np.nan_to_num(out, nan=0.0)


def check_history(history: pd.DataFrame) -> None:
    """Refuse a frame that is not what :meth:`Detector.fit` takes."""
    if not isinstance(history.index, pd.DatetimeIndex) or history.index.tz is None:
        raise ModelError("history needs a UTC DatetimeIndex")
    if "value" not in history.columns:
        raise ModelError("history needs a 'value' column")
