"""GPU detail: every catalogue field of one GPU over time, grouped by family, plus its processes,
pods and alerts. Generated from the catalogue, so a new catalogue field shows up here by itself."""

from __future__ import annotations

from gpufleet.dashboards.panels import (
    TEMPERATURE_WARN_C,
    PanelSpec,
    Q,
    Row,
    dashboard,
    table,
    target,
    timeseries,
    variables,
)
from grafanalib import core as g

UID = "gpufleet-gpu"

FAMILY_TITLES = {
    "health": "Health", "clocks": "Clocks", "thermal": "Temperature and cooling", "power": "Power and energy",
    "utilization": "Utilization", "memory": "Memory", "ecc": "ECC, retired pages, row remapping",
    "throttle": "Throttling (clock events)", "pcie": "PCIe", "nvlink": "NVLink", "xgmi": "XGMI (AMD Infinity Fabric)", "xid": "XID errors",
    "mig": "MIG", "virtualization": "Virtualization", "processes": "Processes", "gpm": "Profiling (GPM)", "analytics": "Predictions",
    "allocator": "Allocation",
}

VENDOR_NAMES = {"nvidia": "NVIDIA", "amd": "AMD"}


def _expr(q: Q, field_id: str) -> str:
    m = q.metric(field_id)
    sel = q.sel(field_id, gpu=True)
    if m.type == "counter":
        return f"rate({sel}[5m])"
    return sel


def _legend(q: Q, field_id: str) -> str:
    m = q.metric(field_id)
    extra = [lb for lb in m.labels if lb not in m.dcgm_sum_labels or not q.dcgm(field_id)]
    return "/".join(["{{" + q.label(field_id, "gpu") + "}}", *("{{" + lb + "}}" for lb in extra)])


COMPUTE_MODES = {0: ("Default", "green"), 1: ("Exclusive thread", "blue"), 2: ("Prohibited", "red"),
                 3: ("Exclusive process", "blue")}
FABRIC_STATES = {1: ("Not started", "orange"), 2: ("In progress", "yellow"), 3: ("Completed", "green")}
RECOVERY_ACTIONS = {0: ("None", "green"), 1: ("GPU reset", "orange"), 2: ("Node reboot", "red"),
                    3: ("Drain P2P", "orange"), 4: ("Drain and reset", "red")}


def _mappings(states: dict[int, tuple[str, str]]) -> list[dict[str, object]]:
    """A Grafana value mapping (number -> text and colour) for an enumerated gauge."""
    return [{"type": "value", "options": {str(k): {"text": text, "color": color, "index": i}
                                          for i, (k, (text, color)) in enumerate(states.items())}}]


def _state_table(title: str, description: str, targets: list[g.Target], columns: dict[str, str],
                 mappings: list[dict[str, object]] | None = None, width: int = 24) -> PanelSpec:
    """An instant table of the current series, with the label columns renamed (``columns``: label -> header)
    and everything else (time, metric name, other labels) hidden."""
    spec = table(title, description, targets, "short", width=width)
    keep = list(columns)
    spec.panel.transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"renameByName": columns,
                                       "indexByName": {c: i for i, c in enumerate(keep)}}},
        {"id": "filterFieldsByName", "options": {"include": {"names": keep}}},
    ]
    if mappings:
        spec.panel.extraJson = {"fieldConfig": {"defaults": {"mappings": mappings}, "overrides": []}}
    return spec


def identity_row(q: Q) -> Row:
    """The GPU info table (model, driver, VBIOS, serial) and the compute mode, fabric state and recovery
    action of each GPU, as text (value mappings), not as lines."""
    node, uuid, gpu = q.label("clock_sm", "node"), q.label("clock_sm", "uuid"), q.label("clock_sm", "gpu")
    if q.mode == "dcgm":  # dcgm-exporter has no info series: its identity labels ride on every series
        info = target(q.sel("clock_sm", gpu=True), instant=True)
        cols = {node: "Node", gpu: "GPU", uuid: "UUID", "modelName": "Model", "DCGM_FI_DRIVER_VERSION": "Driver"}
    else:
        info = target(q.sel("info", gpu=True), instant=True)
        cols = {"node": "Node", "gpu": "GPU", "uuid": "UUID", "model": "Model", "driver_version": "Driver",
                "cuda_version": "CUDA", "vbios_version": "VBIOS", "serial": "Serial",
                "virtualization": "Virtualization"}
    states = [("compute_mode", "Compute mode", "Compute mode: Default (shared), Prohibited (no CUDA contexts) "
               "or Exclusive process (one process at a time).", COMPUTE_MODES),
              ("fabric_state", "NVSwitch fabric state", "Registration of the GPU with the NVSwitch fabric "
               "(HGX / GB200); GPUs on no fabric are absent.", FABRIC_STATES),
              ("recovery_action", "Recovery action", "What the driver says the GPU needs (None, GPU reset, "
               "node reboot, drain); anything but None raises GpuRecoveryActionRequired.", RECOVERY_ACTIONS)]
    panels = [_state_table("GPU info", "Identity of each GPU: model, driver, CUDA, VBIOS and serial number.",
                           [info], cols)]
    for field_id, title, desc, mapping in states:
        f_node, f_gpu, f_uuid = (q.label(field_id, x) for x in ("node", "gpu", "uuid"))
        panels.append(_state_table(title, desc, [target(q.sel(field_id, gpu=True), instant=True)],
                                   {f_node: "Node", f_gpu: "GPU", f_uuid: "UUID", "Value": title},
                                   _mappings(mapping), width=8))
    return Row("Identity, compute mode, fabric", panels)


def mig_row(q: Q) -> Row:
    """Per-MIG-instance memory and utilisation (the instances' own series, labelled with their GPU instance)."""
    def mig_sel(field_id: str) -> str:
        lab = "GPU_I_ID" if q.dcgm(field_id) else "gpu_instance_id"
        return q.sel(field_id, extra=f'{lab}!="",{lab}=~"$mig"')

    def legend(field_id: str) -> str:
        if q.dcgm(field_id):
            return "{{Hostname}} {{gpu}} GI {{GPU_I_ID}} {{GPU_I_PROFILE}}"
        return "{{node}} {{gpu}} GI {{gpu_instance_id}} {{mig_profile}}"

    used, total = mig_sel("fb_used"), mig_sel("fb_total")
    return Row("MIG instances", [
        timeseries("MIG instance memory used", "Framebuffer memory in use per MIG instance.",
                   [target(used, legend("fb_used"))], q.unit("fb_used"), width=8),
        timeseries("MIG instance memory used (share)", "Used / total framebuffer memory of each MIG instance.",
                   [target(f"{used} / {total}", legend("fb_used"))], "percentunit", width=8),
        timeseries("MIG instance utilization", "Graphics / compute engine activity per MIG instance (GPM, "
                   "Hopper and later; the MIG equivalent of GPU utilization).",
                   [target(mig_sel("prof_gr_engine_active"), legend("prof_gr_engine_active"))],
                   q.unit("prof_gr_engine_active"), width=8),
    ])


def build(q: Q) -> g.Dashboard:
    rows: list[Row] = []
    for family, title in FAMILY_TITLES.items():
        panels = []
        for m in q.cat.family(family):
            if m.scope != "device" or m.type == "info":
                continue
            unit = q.unit(m.field)
            if m.type == "counter":
                unit = {"joule": "watt", "s": "percentunit", "ns": "short"}.get(unit, "cps" if unit == "short" else unit)
            desc = m.help + (" (per-second rate over 5 minutes)" if m.type == "counter" else "")
            if len(m.vendors) == 1:  # a field only one vendor provides says so
                desc += f" ({VENDOR_NAMES.get(m.vendors[0], m.vendors[0])} only)"
            thresholds = None
            if m.field == "temperature_gpu":
                thresholds = [(None, "green"), (TEMPERATURE_WARN_C, "red")]
            panels.append(timeseries(m.help.split(" (")[0][:60] or m.name, desc,
                                     [target(_expr(q, m.field), _legend(q, m.field))], unit,
                                     thresholds=thresholds, width=8, height=7))
        if panels:
            rows.append(Row(title, panels))
    rows.append(identity_row(q))
    rows.append(mig_row(q))
    proc_sel = q.sel("process_memory", gpu=True)
    info_sel = 'gpufleet_process_info{node=~"$node",uuid=~"$gpu"}'
    rows.append(Row("Processes, pods and alerts", [
        table("Processes on this GPU", "Processes using the GPU now, with their container and pod.",
              [target(info_sel, instant=True, ref="A"), target(proc_sel, instant=True, ref="B")], "bytes",
              width=12),
        table("Alerts on this GPU", "Alerts Prometheus currently holds for this GPU (from the exported rule pack).",
              [target('ALERTS{uuid=~"$gpu"}', instant=True)], "short", width=12),
    ]))
    return dashboard(UID, "gpufleet / GPU detail", "Every metric of one GPU over time.", ["gpu"], rows,
                     variables(q, gpu=True, mig=True))
