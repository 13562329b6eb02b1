"""Fleet mode: the whole fleet read back from Prometheus / VictoriaMetrics (docs/fleet.md)."""
