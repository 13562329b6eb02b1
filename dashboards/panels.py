"""Shared builders for gpufleet's Grafana dashboards.

Every query is built from catalogue field ids through :class:`Q`, so a dashboard can only ask for a
metric the exporter can emit, in the naming mode the exporter runs in (native or dcgm-compatible).
Panels always carry a description and a unit; layout is computed (no hand-placed grid positions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpufleet.exporter.catalogue import Catalogue, Metric, catalogue
from grafanalib import core as g

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Thresholds shared with the built-in alert pack (tests/dashboards check they agree).
TEMPERATURE_WARN_C = 85.0
IDLE_UTILIZATION = 0.05
FAILURE_RISK_WARN = 0.5

# Grafana units for the catalogue's base units, per naming mode.
_NATIVE_UNITS = {
    "hertz": "hertz", "celsius": "celsius", "watts": "watt", "joules": "joule", "bytes": "bytes",
    "ratio": "percentunit", "seconds": "s", "bytes_per_second": "Bps", "": "short",
}
_DCGM_UNITS = {
    "hertz": "rotmhz", "celsius": "celsius", "watts": "watt", "joules": "none", "bytes": "decmbytes",
    "ratio": "percent", "seconds": "ns", "bytes_per_second": "Bps", "": "short",
}


@dataclass
class Q:
    """Query vocabulary for one naming mode: metric names, label selectors, units and scaled values."""

    mode: str = "native"
    cat: Catalogue = field(default_factory=catalogue)

    def metric(self, field_id: str) -> Metric:
        return self.cat.field(field_id)

    def dcgm(self, field_id: str) -> bool:
        """True when the query for this field uses its dcgm-exporter name."""
        return self.mode == "dcgm" and self.metric(field_id).dcgm_name is not None

    def name(self, field_id: str) -> str:
        m = self.metric(field_id)
        return m.dcgm_name if self.dcgm(field_id) and m.dcgm_name else m.name

    def label(self, field_id: str, native_label: str) -> str:
        """The name of an identity label on this field's series."""
        if not self.dcgm(field_id):
            return native_label
        return {"node": "Hostname", "uuid": "UUID", "model": "modelName", "gpu": "gpu"}.get(native_label, native_label)

    def sel(self, field_id: str, gpu: bool = False, extra: str = "") -> str:
        """``name{node=~"$node"[,uuid=~"$gpu"][,extra]}`` in the right label names."""
        m = self.metric(field_id)
        parts: list[str] = []
        if m.scope in ("device", "process"):
            parts.append(f'{self.label(field_id, "node")}=~"$node"')
            if gpu:
                parts.append(f'{self.label(field_id, "uuid")}=~"$gpu"')
        if extra:
            parts.append(extra)
        return f"{self.name(field_id)}{{{','.join(parts)}}}"

    def unit(self, field_id: str) -> str:
        m = self.metric(field_id)
        table = _DCGM_UNITS if self.dcgm(field_id) else _NATIVE_UNITS
        return table.get(m.unit, "short")

    def value(self, field_id: str, base_value: float) -> float:
        """A threshold in base units, scaled to the unit the query returns."""
        m = self.metric(field_id)
        return base_value * m.dcgm_scale if self.dcgm(field_id) else base_value

    def legend(self, field_id: str, *labels: str) -> str:
        return "/".join("{{" + self.label(field_id, lb) + "}}" for lb in labels)


def target(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, instant=instant, datasource=DATASOURCE,
                    format="table" if instant else "time_series")


def _thresholds(steps: list[tuple[float | None, str]]) -> list[g.Threshold]:
    out = []
    for i, (value, color) in enumerate(steps):
        out.append(g.Threshold(color, i, 0.0 if value is None else float(value)))
    return out


def timeseries(title: str, description: str, targets: list[g.Target], unit: str, *,
               thresholds: list[tuple[float | None, str]] | None = None, stacked: bool = False,
               width: int = 12, height: int = 8) -> PanelSpec:
    panel = g.TimeSeries(
        title=title, description=description, targets=targets, unit=unit, dataSource=DATASOURCE,
        thresholds=_thresholds(thresholds) if thresholds else [],
        thresholdsStyleMode="line" if thresholds else "off",
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none", "group": "A"},
        legendDisplayMode="table", legendPlacement="right" if width >= 16 else "bottom",
        tooltipMode="multi",
    )
    return PanelSpec(panel, width, height)


def stat(title: str, description: str, tgt: g.Target, unit: str, *,
         thresholds: list[tuple[float | None, str]] | None = None, width: int = 4, height: int = 4) -> PanelSpec:
    panel = g.Stat(title=title, description=description, targets=[tgt], format=unit, dataSource=DATASOURCE,
                   thresholds=_thresholds(thresholds or [(None, "green")]), reduceCalc="lastNotNull",
                   graphMode="area")
    return PanelSpec(panel, width, height)


def heatmap(title: str, description: str, tgt: g.Target, unit: str, *, width: int = 12,
            height: int = 8) -> PanelSpec:
    panel = g.Heatmap(title=title, description=description, targets=[tgt], dataSource=DATASOURCE,
                      dataFormat="timeseries", hideZeroBuckets=True, tooltip=g.Tooltip(),
                      yAxis=g.YAxis(format=unit))
    return PanelSpec(panel, width, height, unit=unit)


def table(title: str, description: str, targets: list[g.Target], unit: str, *, width: int = 12,
          height: int = 8) -> PanelSpec:
    panel = g.Table(title=title, description=description, targets=targets, dataSource=DATASOURCE, unit=unit,
                    transformations=[{"id": "merge", "options": {}}])
    return PanelSpec(panel, width, height)


def bargauge(title: str, description: str, tgt: g.Target, unit: str, *,
             thresholds: list[tuple[float | None, str]] | None = None, width: int = 12,
             height: int = 8) -> PanelSpec:
    panel = g.BarGauge(title=title, description=description, targets=[tgt], format=unit,
                       dataSource=DATASOURCE, orientation="horizontal", displayMode="gradient",
                       calc="lastNotNull", max=None, min=None,
                       thresholds=_thresholds(thresholds or [(None, "green")]),
                       # grafanalib writes the pre-Grafana-7 options; give the current field config too
                       extraJson={"fieldConfig": {"defaults": {"unit": unit}},
                                  "options": {"reduceOptions": {"calcs": ["lastNotNull"], "values": False}}})
    return PanelSpec(panel, width, height)


@dataclass
class PanelSpec:
    panel: Any
    width: int
    height: int
    unit: str | None = None


@dataclass
class Row:
    title: str
    panels: list[PanelSpec]


def layout(rows: list[Row]) -> list[Any]:
    """Place rows and their panels left to right, wrapping at 24 columns; returns grafanalib panels."""
    out: list[Any] = []
    y = 0
    for row in rows:
        out.append(g.RowPanel(title=row.title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x = 0
        line_height = 0
        for spec in row.panels:
            if x + spec.width > 24:
                y += line_height
                x, line_height = 0, 0
            spec.panel.gridPos = g.GridPos(h=spec.height, w=spec.width, x=x, y=y)
            out.append(spec.panel)
            x += spec.width
            line_height = max(line_height, spec.height)
        y += line_height
    return out


def variables(q: Q, *, gpu: bool = True, pods: bool = False, mig: bool = False) -> g.Templating:
    """Datasource, node and GPU variables (and namespace / pod, MIG instance where relevant)."""
    up = "info" if q.mode == "native" else "clock_sm"
    node_label = q.label(up, "node")
    uuid_label = q.label(up, "uuid")
    tpl = [
        g.Template(name="datasource", label="Data source", query="prometheus", type="datasource",
                   default="Prometheus"),
        g.Template(name="node", label="Node", query=f"label_values({q.name(up)}, {node_label})",
                   dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*", default="$__all"),
    ]
    if gpu:
        tpl.append(g.Template(name="gpu", label="GPU (uuid)",
                              query=f'label_values({q.name(up)}{{{node_label}=~"$node"}}, {uuid_label})',
                              dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*",
                              default="$__all"))
    if pods:
        tpl.append(g.Template(name="namespace", label="Namespace",
                              query='label_values(gpufleet_process_info{node=~"$node"}, namespace)',
                              dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*",
                              default="$__all"))
        tpl.append(g.Template(name="pod", label="Pod",
                              query='label_values(gpufleet_process_info{namespace=~"$namespace"}, pod)',
                              dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*",
                              default="$__all"))
    if mig:
        tpl.append(g.Template(name="mig", label="MIG instance",
                              query='label_values(gpufleet_gpu_info{node=~"$node"}, gpu_instance_id)',
                              dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*",
                              default="$__all"))
    return g.Templating(list=tpl)


def dashboard(uid: str, title: str, description: str, tags: list[str], rows: list[Row],
              templating: g.Templating, refresh: str = "30s") -> g.Dashboard:
    return g.Dashboard(
        title=title, uid=uid, description=description, tags=["gpufleet", *tags], panels=layout(rows),
        templating=templating, refresh=refresh, time=g.Time("now-6h", "now"), timezone="browser",
        editable=True, sharedCrosshair=True,
    )
