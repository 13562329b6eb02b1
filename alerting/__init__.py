"""Alert rules, the alert engine, notifications (apprise) and Prometheus / Alertmanager export."""
