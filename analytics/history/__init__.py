"""History readers: one interface over the embedded store, Prometheus and InfluxDB / VictoriaMetrics."""
