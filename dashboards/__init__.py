"""Grafana boards of the whole campus as code: build, check against InfluxDB, publish."""
