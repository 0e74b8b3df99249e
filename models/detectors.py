"""Every anomaly detector by name, so configuration and the registry can say
``detector: seasonal`` and get the class behind it."""

from __future__ import annotations

from typing import Any

from models.base import Detector, ModelError
from models.baselines import RollingZScore, StaticThreshold
from models.drift import ResidualDrift
from models.forest import ResidualForest
from models.regressor import QuantileRegressor
from models.seasonal import SeasonalBaseline

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        SeasonalBaseline,
        QuantileRegressor,
        ResidualForest,
        ResidualDrift,
        RollingZScore,
        StaticThreshold,
    )
}


def make(name: str, **kw: Any) -> Detector:
    """A new, unfitted detector ``name`` built with the keyword arguments ``kw``."""
    cls = DETECTORS.get(name)
    if cls is None:
        raise ModelError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ModelError(f"detector {name!r}: {exc}") from exc
