"""Throttle: clock-event reasons (bitmask and one series per reason) and cumulative violation time."""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice
from exporter.nvml_query import NA

REASONS = (("gpu_idle", "nvmlClocksEventReasonGpuIdle"),
           ("applications_clocks_setting", "nvmlClocksEventReasonApplicationsClocksSetting"),
           ("sw_power_cap", "nvmlClocksEventReasonSwPowerCap"),
           ("hw_slowdown", "nvmlClocksEventReasonHwSlowdown"),
           ("sync_boost", "nvmlClocksEventReasonSyncBoost"),
           ("sw_thermal_slowdown", "nvmlClocksEventReasonSwThermalSlowdown"),
           ("hw_thermal_slowdown", "nvmlClocksEventReasonHwThermalSlowdown"),
           ("hw_power_brake_slowdown", "nvmlClocksEventReasonHwPowerBrakeSlowdown"),
           ("display_clock_setting", "nvmlClocksEventReasonDisplayClockSetting"))

POLICIES = (("throttle_power_seconds", "NVML_PERF_POLICY_POWER"),
            ("throttle_thermal_seconds", "NVML_PERF_POLICY_THERMAL"),
            ("throttle_sync_boost_seconds", "NVML_PERF_POLICY_SYNC_BOOST"),
            ("throttle_board_limit_seconds", "NVML_PERF_POLICY_BOARD_LIMIT"),
            ("throttle_low_util_seconds", "NVML_PERF_POLICY_LOW_UTILIZATION"),
            ("throttle_reliability_seconds", "NVML_PERF_POLICY_RELIABILITY"))

NS = 1e-9


class ThrottleCollector(Collector):
    name = "throttle"

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        mask = self.get(dev, "clock_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons")
        if mask is NA:  # drivers before the rename only have the "throttle" spelling
            mask = self.get(dev, "clock_event_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
        if mask is not NA:
            mask = int(mask)
            out.sample(dev.uuid, "clock_event_reasons", mask)
            for label, const in REASONS:
                bit = getattr(n, const, None)
                if bit is not None:
                    out.sample(dev.uuid, "clock_event_active", 1 if mask & bit else 0, (("reason", label),))
        for field_id, const in POLICIES:
            policy = getattr(n, const, None)
            if policy is None:
                continue
            got = self.get(dev, field_id, "nvmlDeviceGetViolationStatus", policy)
            if got is not NA:
                out.sample(dev.uuid, field_id, got.violationTime, scale=NS)
