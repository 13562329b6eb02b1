"""Grafana dashboards generated from code (grafanalib) and the metric catalogue."""
