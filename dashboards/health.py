"""Errors and health: XID by code and severity, ECC, row remapping, retired pages, NVLink and PCIe errors,
and the failure-risk ranking with its horizons."""

from __future__ import annotations

from gpufleet.dashboards.panels import (
    FAILURE_RISK_WARN,
    Q,
    Row,
    bargauge,
    dashboard,
    table,
    target,
    timeseries,
    variables,
)
from grafanalib import core as g

UID = "gpufleet-health"
H24 = 'horizon="24h"'

# XID codes by what they mean for an operator (NVIDIA's XID catalogue).
HARDWARE_XIDS = (48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120)
APPLICATION_XIDS = (13, 31, 43, 45)


def _codes(codes: tuple[int, ...]) -> str:
    return "|".join(str(c) for c in codes)


def build(q: Q) -> g.Dashboard:
    xid = q.sel("xid_errors", gpu=True)
    hw = q.sel("xid_errors", gpu=True, extra=f'xid=~"{_codes(HARDWARE_XIDS)}"')
    app = q.sel("xid_errors", gpu=True, extra=f'xid=~"{_codes(APPLICATION_XIDS)}"')
    xids = Row("XID errors", [
        timeseries("XID errors by code", "XID errors per code over 10-minute windows.",
                   [target(f"sum by (xid) (increase({xid}[10m]))", "XID {{xid}}")], "short"),
        timeseries("Hardware vs application XIDs",
                   f"Hardware-critical codes ({', '.join(map(str, HARDWARE_XIDS))}) page; application codes "
                   f"({', '.join(map(str, APPLICATION_XIDS))}) do not.",
                   [target(f"sum(increase({hw}[10m])) or vector(0)", "hardware (pages)", ref="A"),
                    target(f"sum(increase({app}[10m])) or vector(0)", "application", ref="B")], "short"),
    ])

    def incr(field: str, window: str = "1h") -> str:
        return f'sum by ({q.label(field, "node")}, {q.label(field, "uuid")}) (increase({q.sel(field, gpu=True)}[{window}]))'

    def legend(field: str) -> str:
        return "{{" + q.label(field, "node") + "}}/{{" + q.label(field, "uuid") + "}}"

    memory = Row("Memory errors", [
        timeseries("Uncorrectable ECC errors (1 h)", "Double-bit volatile ECC errors per GPU in the last hour.",
                   [target(incr("ecc_uncorrected_volatile"), legend("ecc_uncorrected_volatile"))], "short",
                   thresholds=[(None, "green"), (1, "red")], width=8),
        timeseries("Correctable ECC errors (1 h)", "Single-bit volatile ECC errors per GPU in the last hour; a "
                   "rising rate can precede uncorrectable errors.",
                   [target(incr("ecc_corrected_volatile"), legend("ecc_corrected_volatile"))], "short", width=8),
        timeseries("Row remapping", "Pending row remaps and remap failures (1 = yes).",
                   [target(q.sel("row_remap_pending", gpu=True), legend("row_remap_pending") + " pending", ref="A"),
                    target(q.sel("row_remap_failure", gpu=True), legend("row_remap_failure") + " failed", ref="B")],
                   "short", width=8),
        timeseries("Remapped rows", "Rows remapped for correctable and uncorrectable errors.",
                   [target(q.sel("remapped_rows_correctable", gpu=True), legend("remapped_rows_correctable") + " corr", ref="A"),
                    target(q.sel("remapped_rows_uncorrectable", gpu=True), legend("remapped_rows_uncorrectable") + " unc", ref="B")],
                   "short", width=12),
        timeseries("Retired pages", "Pages retired for single- and double-bit errors, and retirement pending.",
                   [target(q.sel("retired_pages_sbe", gpu=True), legend("retired_pages_sbe") + " sbe", ref="A"),
                    target(q.sel("retired_pages_dbe", gpu=True), legend("retired_pages_dbe") + " dbe", ref="B"),
                    target(q.sel("retired_pages_pending", gpu=True), legend("retired_pages_pending") + " pending", ref="C")],
                   "short", width=12),
    ])
    links = Row("Interconnect errors", [
        timeseries("NVLink CRC and replay errors (1 h)", "NVLink flit/data CRC errors and replays per GPU.",
                   [target(incr("nvlink_crc_flit_errors"), legend("nvlink_crc_flit_errors") + " crc flit", ref="A"),
                    target(incr("nvlink_crc_data_errors"), legend("nvlink_crc_data_errors") + " crc data", ref="B"),
                    target(incr("nvlink_replay_errors"), legend("nvlink_replay_errors") + " replay", ref="C"),
                    target(incr("nvlink_recovery_errors"), legend("nvlink_recovery_errors") + " recovery", ref="D")],
                   "short"),
        timeseries("PCIe replays (1 h)", "PCIe replay counter increase per GPU; a steady rise points at a bad link or riser.",
                   [target(incr("pcie_replay"), legend("pcie_replay"))], "short"),
    ])
    risk_node = q.label("failure_risk", "node")
    risk = Row("Failure risk", [
        bargauge("GPUs most at risk (24 h)", f"Predicted probability of failure within 24 h; alerts above {FAILURE_RISK_WARN:g}.",
                 target(f'topk(15, {q.sel("failure_risk", extra=H24)})',
                        "{{" + risk_node + "}}/{{uuid}}", instant=True),
                 "percentunit", thresholds=[(None, "green"), (FAILURE_RISK_WARN / 2, "orange"), (FAILURE_RISK_WARN, "red")]),
        table("Risk by horizon", "Failure probability per GPU for every horizon the model predicts.",
              [target(f'topk(30, {q.sel("failure_risk")})', instant=True)], "percentunit"),
        timeseries("Risk over time (top 5, 24 h)", "The five riskiest GPUs' 24 h failure probability over time.",
                   [target(f'topk(5, {q.sel("failure_risk", extra=H24)})',
                           "{{" + risk_node + "}}/{{uuid}}")], "percentunit", width=24),
    ])
    return dashboard(UID, "gpufleet / Errors and health", "XID, ECC, row remapping, interconnect errors and failure risk.",
                     ["health"], [xids, memory, links, risk], variables(q, gpu=True))
