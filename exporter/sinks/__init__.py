"""Sinks render snapshots: Prometheus exposition, InfluxDB line protocol, the history store."""
