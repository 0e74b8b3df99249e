"""Seeded, deterministic simulators of the campus's meters and sensors, and
the MQTT publisher that plays them in real time, accelerated or as fast as
possible."""

from simulators.engine import CampusSimulator
from simulators.run import SimulationRun

__all__ = ["CampusSimulator", "SimulationRun"]
