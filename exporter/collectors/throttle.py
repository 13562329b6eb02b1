"""Throttle: clock-event reasons (bitmask and one series per reason) and cumulative violation time."""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice, make_sample
from gpufleet.exporter.nvml_query import NA

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

    def __init__(self) -> None:
        super().__init__()
        self._plan: tuple[tuple[tuple[int, tuple[tuple[str, str], ...]], ...], tuple[tuple[str, Any], ...]] | None = None

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        if self._plan is None:
            n = self.nvml
            reasons: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = tuple((bit, (("reason", label),)) for label, const in REASONS
                            if (bit := getattr(n, const, None)) is not None)
            policies = tuple((field_id, policy) for field_id, const in POLICIES
                             if (policy := getattr(n, const, None)) is not None)
            self._plan = (reasons, policies)
        reasons, policies = self._plan
        mask = self.get(dev, "clock_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons")
        if mask is NA:  # drivers before the rename only have the "throttle" spelling
            mask = self.get(dev, "clock_event_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
        uuid, now, append = dev.uuid, out.now, out.samples.append
        if mask is not NA:
            mask = int(mask)
            append(make_sample(uuid, "clock_event_reasons", float(mask), now, ()))
            for bit, labels in reasons:
                append(make_sample(uuid, "clock_event_active", 1.0 if mask & bit else 0.0, now, labels))
        read, handle = self.query.read, dev.handle
        for field_id, policy in policies:
            got = read(uuid, field_id, "nvmlDeviceGetViolationStatus", handle, policy)
            if got is not NA:
                out.sample(uuid, field_id, got.violationTime, scale=NS)
