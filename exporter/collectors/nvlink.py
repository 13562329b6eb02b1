"""NVLink: per-link state, CRC / replay / recovery error counters, data throughput (KiB -> bytes).

The links a GPU has are found once (the first cycle): a link whose state NVML refuses is skipped
from then on, so GPUs without NVLink cost one call per cycle after the first.
"""

from __future__ import annotations

from exporter.collectors.base import Collector, Emitter, NvmlDevice
from exporter.collectors.fields import field_values
from exporter.nvml_query import NA

ERRORS = (("nvlink_crc_flit_errors", "NVML_NVLINK_ERROR_DL_CRC_FLIT"),
          ("nvlink_crc_data_errors", "NVML_NVLINK_ERROR_DL_CRC_DATA"),
          ("nvlink_replay_errors", "NVML_NVLINK_ERROR_DL_REPLAY"),
          ("nvlink_recovery_errors", "NVML_NVLINK_ERROR_DL_RECOVERY"))
KIB = 1024.0
_LINK_LABELS = tuple((("link", str(i)),) for i in range(64))


class NvlinkCollector(Collector):
    name = "nvlink"

    def __init__(self) -> None:
        super().__init__()
        self._links: dict[str, list[int]] = {}

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

    def collect_device(self, dev: NvmlDevice, out: Emitter) -> None:
        n = self.nvml
        links = self._links.get(dev.uuid)
        if links is None:
            links = self._links[dev.uuid] = self._discover(dev)
        if not links:
            return
        errors = [(f, getattr(n, c)) for f, c in ERRORS]
        tx_total = rx_total = 0.0
        have_bw = False
        ids = []
        for link in links:
            ids += [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link), (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)]
        values = field_values(self.query, dev, "nvlink_tx_bytes", ids)
        uuid = dev.uuid
        call = self.query.call
        for i, link in enumerate(links):
            lab = _LINK_LABELS[link] if link < len(_LINK_LABELS) else (("link", str(link)),)
            state = call(uuid, f"nvlink_up:{link}", "nvmlDeviceGetNvLinkState", dev.handle, link)
            out.sample(uuid, "nvlink_up", None if state is NA else (1 if state else 0), lab)
            for field_id, counter in errors:
                value = call(uuid, f"{field_id}:{link}", "nvmlDeviceGetNvLinkErrorCounter", dev.handle, link, counter)
                out.sample(uuid, field_id, value, lab)
            if values is not None:
                tx, rx = values[2 * i], values[2 * i + 1]
                if tx is not None:
                    out.sample(dev.uuid, "nvlink_tx_bytes", tx, lab, KIB)
                    tx_total += tx
                    have_bw = True
                if rx is not None:
                    out.sample(dev.uuid, "nvlink_rx_bytes", rx, lab, KIB)
                    rx_total += rx
                    have_bw = True
        if have_bw:
            out.sample(dev.uuid, "nvlink_bandwidth", tx_total + rx_total, scale=KIB)
