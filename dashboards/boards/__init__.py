"""The campus boards: one module per Grafana dashboard, built from a shared context."""
