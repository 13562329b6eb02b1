"""AMD throttle status from ``amdsmi_get_violation_status`` (MI300 and newer), mapped onto the
vendor-neutral ``clock_event_active{reason}``: PPT power cap -> sw_power_cap, socket thermal ->
sw_thermal_slowdown, PROCHOT -> hw_thermal_slowdown; voltage-regulator and HBM thermal limits keep
AMD-only reasons (vr_thermal_slowdown, hbm_thermal_slowdown)."""

from __future__ import annotations

from gpufleet.exporter.amdsmi_query import num
from gpufleet.exporter.collectors.amd.base import AmdCollector, AmdDevice, entry
from gpufleet.exporter.collectors.base import Emitter

REASONS = (("sw_power_cap", "active_ppt_pwr"), ("sw_thermal_slowdown", "active_socket_thrm"),
           ("hw_thermal_slowdown", "active_prochot_thrm"), ("vr_thermal_slowdown", "active_vr_thrm"),
           ("hbm_thermal_slowdown", "active_hbm_thrm"))
LABELS = {reason: (("reason", reason),) for reason, _ in REASONS}


class AmdThrottleCollector(AmdCollector):
    name = "throttle"

    def collect_device(self, dev: AmdDevice, out: Emitter) -> None:
        status = self.get(dev, "clock_event_active", "amdsmi_get_violation_status")
        for reason, key in REASONS:
            value = num(entry(status, key))
            if value is not None:
                out.sample(dev.uuid, "clock_event_active", 1 if value else 0, LABELS[reason])
