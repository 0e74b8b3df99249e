"""What is modelled for each device kind, and by which detector (kept apart
from training, so that the rules engine can read it without scikit-learn)."""

from __future__ import annotations

# kind -> (metric, detector): what is modelled per device kind. The detector is
# the one `campus model evaluate --simulated` finds cheapest for the kind
# (docs/anomaly.md); dorm rooms have no simulated slow fault yet and keep the
# seasonal baseline, the cheapest to run.
MODELLED: dict[str, tuple[str, str]] = {
    "power": ("power_kw", "static"),
    "water": ("flow_lpm", "drift"),
    "hvac": ("power_kw", "drift"),
    "dorm": ("temp_c", "seasonal"),
}
