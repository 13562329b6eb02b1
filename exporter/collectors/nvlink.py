"""NVLink: per-link state, CRC / replay / recovery error counters, data throughput (KiB -> bytes).

The links a GPU has are found once (the first cycle): a link whose state NVML refuses is skipped
from then on, so GPUs without NVLink cost one call per cycle after the first.
"""

from __future__ import annotations

from typing import Any

from gpufleet.exporter.collectors.base import Collector, Emitter, NvmlDevice, make_sample
from gpufleet.exporter.collectors.fields import field_values
from gpufleet.exporter.nvml_query import NA

ERRORS = (("nvlink_crc_flit_errors", "NVML_NVLINK_ERROR_DL_CRC_FLIT"),
          ("nvlink_crc_data_errors", "NVML_NVLINK_ERROR_DL_CRC_DATA"),
          ("nvlink_replay_errors", "NVML_NVLINK_ERROR_DL_REPLAY"),
          ("nvlink_recovery_errors", "NVML_NVLINK_ERROR_DL_RECOVERY"))
KIB = 1024.0
_LINK_LABELS = tuple((("link", str(i)),) for i in range(64))
_Link = tuple[int, tuple[tuple[str, str], ...], str, tuple[tuple[str, str, int], ...]]
"""(link, its labels, the choke point's key for its state, ((field, key, NVML counter id), ...))."""


class NvlinkCollector(Collector):
    name = "nvlink"

    def __init__(self) -> None:
        super().__init__()
        self._links: dict[str, list[int]] = {}
        self._plans: dict[str, tuple[list[_Link], list[Any]]] = {}

    def _discover(self, dev: NvmlDevice) -> list[int]:
        links = []
        max_links = int(getattr(self.nvml, "NVML_NVLINK_MAX_LINKS", 18))
        for link in range(max_links):
            state = self.query.call(dev.uuid, f"nvlink_up:{link}", "nvmlDeviceGetNvLinkState", dev.handle, link,
                                    empty=(self.nvml.NVML_ERROR_INVALID_ARGUMENT, self.nvml.NVML_ERROR_NOT_FOUND))
            if state is NA:
                if link == 0:
                    break
                continue
            links.append(link)
        return links

    def _plan(self, dev: NvmlDevice) -> tuple[list[_Link], list[Any]] | None:
        """Per link (once per device): its label, the choke point's field keys, the counter ids."""
        got = self._plans.get(dev.uuid)
        if got is None:
            links = self._links.get(dev.uuid)
            if links is None:
                links = self._links[dev.uuid] = self._discover(dev)
            n = self.nvml
            errors = [(f, getattr(n, c)) for f, c in ERRORS]
            per_link: list[_Link] = [(link, _LINK_LABELS[link] if link < len(_LINK_LABELS) else (("link", str(link)),),
                         f"nvlink_up:{link}", tuple((f, f"{f}:{link}", counter) for f, counter in errors))
                        for link in links]
            ids: list[Any] = []
            for link in links:
                ids += [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link), (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)]
            got = self._plans[dev.uuid] = (per_link, ids)
        return got if got[0] else None

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        plan = self._plan(dev)
        if plan is None:
            return
        per_link, ids = plan
        q = self.query
        values = field_values(q, dev, "nvlink_tx_bytes", ids)
        uuid, handle, now, append = dev.uuid, dev.handle, out.now, out.samples.append
        read = q.read
        tx_total = rx_total = 0.0
        have_bw = False
        for i, (link, lab, up_key, counters) in enumerate(per_link):
            state = read(uuid, up_key, "nvmlDeviceGetNvLinkState", handle, link)
            if state is not NA and state is not None:
                append(make_sample(uuid, "nvlink_up", 1.0 if state else 0.0, now, lab))
            for field_id, key, counter in counters:
                value = read(uuid, key, "nvmlDeviceGetNvLinkErrorCounter", handle, link, counter)
                if value is not NA and value is not None:
                    append(make_sample(uuid, field_id, float(value), now, lab))
            if values is not None:
                tx, rx = values[2 * i], values[2 * i + 1]
                if tx is not None:
                    append(make_sample(uuid, "nvlink_tx_bytes", tx * KIB, now, lab))
                    tx_total += tx
                    have_bw = True
                if rx is not None:
                    append(make_sample(uuid, "nvlink_rx_bytes", rx * KIB, now, lab))
                    rx_total += rx
                    have_bw = True
        if have_bw:
            out.sample(uuid, "nvlink_bandwidth", tx_total + rx_total, scale=KIB)
