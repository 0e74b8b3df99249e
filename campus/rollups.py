"""Retention and rollups of the readings (contract shared by `campus db init` and the boards).

Raw readings stay in the default retention policy ``autogen`` for a configured
time (90 days by default). Continuous queries roll them up into the retention
policies ``hourly`` and ``daily``, kept for years, into measurements of the same
name (one per device kind) with the same tags. A rollup keeps each gauge's mean
under the metric's own name plus ``<metric>_min`` and ``<metric>_max``, and each
counter's last value under its own name, so one query such as
``SELECT mean("power_kw") FROM "$rp"."power"`` or
``SELECT non_negative_difference(last("energy_kwh")) FROM "$rp"."power"``
answers from raw data or from either rollup.
"""

from __future__ import annotations

RP_RAW = "autogen"
RP_HOURLY = "hourly"
RP_DAILY = "daily"

#: The dashboard variable holding the retention policy for the board's time range.
RP_VARIABLE = "rp"
