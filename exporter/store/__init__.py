"""The embedded history store (the default when no Prometheus / InfluxDB exists)."""
