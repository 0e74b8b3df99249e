"""Anomaly models: detectors behind one interface, training from InfluxDB,
a versioned registry, online scoring for the rules engine, and evaluation on
NAB and on simulated faults (docs/anomaly.md)."""
