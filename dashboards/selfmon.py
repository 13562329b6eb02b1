"""gpufleet itself: collector durations and successes, snapshot age, store size, InfluxDB buffer, model
training runs and drift, notification failures."""

from __future__ import annotations

from gpufleet.dashboards.panels import Q, Row, dashboard, target, timeseries, variables
from grafanalib import core as g

UID = "gpufleet-self"


def build(q: Q) -> g.Dashboard:
    rows = [
        Row("Collection", [
            timeseries("Collector duration", "Duration of each collector's last run.",
                       [target(q.name("collector_duration"), "{{instance}} {{collector}}")], "s"),
            timeseries("Collector success", "1 if the collector's last run succeeded and its data is fresh.",
                       [target(q.name("collector_success"), "{{instance}} {{collector}}")], "short",
                       thresholds=[(None, "red"), (1, "green")]),
            timeseries("Time since last success", "Seconds since each collector last succeeded.",
                       [target(f'time() - {q.name("collector_last_success")}', "{{instance}} {{collector}}")], "s"),
            timeseries("Snapshot age", "Age of the snapshot each exporter serves.",
                       [target(q.name("snapshot_age"), "{{instance}}")], "s"),
        ]),
        Row("Storage and delivery", [
            timeseries("History store size", "Size of the embedded history store on disk.",
                       [target(q.name("store_bytes"), "{{instance}}")], "bytes"),
            timeseries("Samples written to the store", "Samples per second written to the embedded store.",
                       [target(f'rate({q.name("store_written_samples")}[5m])', "{{instance}}")], "cps"),
            timeseries("InfluxDB buffer", "Points waiting in the on-disk buffer for InfluxDB.",
                       [target(q.name("influx_buffered_points"), "{{instance}}")], "short"),
            timeseries("InfluxDB delivery", "Points written, dropped and write errors per second.",
                       [target(f'rate({q.name("influx_written_points")}[5m])', "{{instance}} written", ref="A"),
                        target(f'rate({q.name("influx_dropped_points")}[5m])', "{{instance}} dropped {{policy}}", ref="B"),
                        target(f'rate({q.name("influx_write_errors")}[5m])', "{{instance}} errors", ref="C")], "cps"),
        ]),
        Row("Models and notifications", [
            timeseries("Training runs", "Model training runs by outcome (1 h).",
                       [target(f'increase({q.name("model_training_runs")}[1h])', "{{model}} {{outcome}}")], "short"),
            timeseries("Failure-score drift", "Distance between the current and the reference score distribution.",
                       [target(q.name("model_score_drift"), "{{model}}")], "short"),
            timeseries("Notifications", "Notifications sent and failed per channel (1 h).",
                       [target(f'increase({q.name("notifications_sent")}[1h])', "{{channel}} sent", ref="A"),
                        target(f'increase({q.name("notifications_failed")}[1h])', "{{channel}} failed", ref="B")],
                       "short"),
            timeseries("Alerts firing", "Alerts firing in gpufleet's engine by name and severity.",
                       [target(q.name("alerts_firing"), "{{alertname}} {{severity}}")], "short"),
        ]),
    ]
    return dashboard(UID, "gpufleet / gpufleet itself", "Health of gpufleet's own collection, storage, models and alerts.",
                     ["self"], rows, variables(q, gpu=False))
