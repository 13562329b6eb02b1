"""GPU -> Kubernetes pod attribution from the kubelet pod-resources API (gRPC on a unix socket).

kubelet serves ``v1.PodResourcesLister/List`` on ``/var/lib/kubelet/pod-resources/kubelet.sock``: every
pod on the node, its containers and the device ids the device plugins allocated to each. The NVIDIA
device plugin hands out GPU UUIDs (``GPU-…``), MIG device UUIDs (``MIG-…``, or the legacy
``MIG-GPU-<uuid>/<gi>/<ci>``), GPU indices with ``DEVICE_ID_STRATEGY=index``, and, for shared
(time-sliced / MPS) GPUs, replicas ``<id>::<n>``; the AMD device plugin hands out PCI bus ids.

:class:`PodAttributedSource` wraps any device source: after each collection it asks kubelet and adds
one ``gpufleet_gpu_pod_info{namespace,pod,container,resource,replica}`` series (value 1) per
allocation of a GPU to a container. The attribution is an ``_info`` series joined on ``uuid`` rather
than labels on every GPU series, so cardinality stays bounded (one series per allocated device, not
one copy of every metric per pod) and a pod going away removes exactly its series (docs/exporter.md).

The gRPC message classes are built at run time from a descriptor written here (field numbers of the
v1 API); grpcio and protobuf come with the ``kubernetes`` extra and are imported only when this
source is enabled (``exporter.pod_resources``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import BackendUnavailable, ConfigError
from gpufleet.exporter.schema import CollectorStat, Device, Sample, Snapshot
from gpufleet.exporter.sources.base import Source

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
SERVICE = "v1.PodResourcesLister"
LIST_METHOD = f"/{SERVICE}/List"
COLLECTOR = "podresources"

# The v1 messages this client reads (name -> fields: (field name, number, type, repeated, message type)).
# Fields the client does not read (cpu_ids, memory, topology, dynamic resources) are skipped by
# protobuf as unknown fields, so newer kubelets stay compatible.
_STRING, _MESSAGE = 9, 11
_MESSAGES: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "ListPodResourcesRequest": [],
    "ListPodResourcesResponse": [("pod_resources", 1, _MESSAGE, True, "PodResources")],
    "PodResources": [("name", 1, _STRING, False, ""), ("namespace", 2, _STRING, False, ""),
                     ("containers", 3, _MESSAGE, True, "ContainerResources")],
    "ContainerResources": [("name", 1, _STRING, False, ""), ("devices", 2, _MESSAGE, True, "ContainerDevices")],
    "ContainerDevices": [("resource_name", 1, _STRING, False, ""), ("device_ids", 2, _STRING, True, "")],
}


@cache
def messages() -> dict[str, Any]:
    """The v1 message classes, built from the descriptor above (needs protobuf: the kubernetes extra)."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise ConfigError("exporter.pod_resources needs protobuf and grpcio: "
                          "pip install 'gpufleet[kubernetes]'") from exc
    fdp = descriptor_pb2.FileDescriptorProto(name="gpufleet/podresources_v1.proto", package="v1", syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype,  # type: ignore[arg-type]
                              label=3 if repeated else 1)  # type: ignore[arg-type]
            if type_name:
                f.type_name = f".v1.{type_name}"
    svc = fdp.service.add(name="PodResourcesLister")
    svc.method.add(name="List", input_type=".v1.ListPodResourcesRequest", output_type=".v1.ListPodResourcesResponse")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{name}")) for name in _MESSAGES}


@dataclass(frozen=True, slots=True)
class Allocation:
    """One device id allocated to one container."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


def split_replica(device_id: str) -> tuple[str, str]:
    """``GPU-x::3`` -> (``GPU-x``, ``3``): a shared GPU's replica; a plain id has replica ``""``."""
    base, sep, replica = device_id.rpartition("::")
    return (base, replica) if sep and base else (device_id, "")


class PodResourcesClient:
    """Calls ``List`` on kubelet's pod-resources socket (one channel, kept open)."""

    def __init__(self, socket: Path | str = DEFAULT_SOCKET, timeout: float = 2.0) -> None:
        self.socket = Path(socket)
        self.timeout = timeout
        self._channel: Any = None
        self._list: Any = None

    def _connect(self) -> Any:
        if self._list is None:
            try:
                import grpc
            except ImportError as exc:
                raise ConfigError("exporter.pod_resources needs grpcio and protobuf: "
                                  "pip install 'gpufleet[kubernetes]'") from exc
            m = messages()
            self._channel = grpc.insecure_channel(f"unix://{self.socket}")
            self._list = self._channel.unary_unary(
                LIST_METHOD, request_serializer=m["ListPodResourcesRequest"].SerializeToString,
                response_deserializer=m["ListPodResourcesResponse"].FromString)
        return self._list

    def list(self) -> list[Allocation]:
        """Every device allocation on the node. Raises BackendUnavailable (socket missing, kubelet down)."""
        if not self.socket.exists():
            raise BackendUnavailable(f"kubelet pod-resources socket {self.socket} does not exist (mount "
                                    "/var/lib/kubelet/pod-resources into the exporter pod, or set "
                                    "exporter.pod_resources_socket)")
        import grpc

        call = self._connect()
        try:
            resp = call(messages()["ListPodResourcesRequest"](), timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise BackendUnavailable(f"kubelet pod-resources List on {self.socket} failed: "
                                    f"{getattr(code, 'name', code)} {detail or ''}".strip()) from None
        out = []
        for pod in resp.pod_resources:
            for c in pod.containers:
                for d in c.devices:
                    for device_id in d.device_ids:
                        out.append(Allocation(pod.namespace, pod.name, c.name, d.resource_name, device_id))
        return out

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = self._list = None


def _index(devices: list[Device]) -> dict[str, Device]:
    """Every id a device plugin may use for a device: UUID, index (physical GPUs), PCI bus id, legacy MIG id."""
    out: dict[str, Device] = {}
    for d in devices:
        out[d.uuid] = d
        if d.is_mig:
            if d.mig_parent_uuid and d.mig_gi_id is not None and d.mig_ci_id is not None:
                out[f"MIG-{d.mig_parent_uuid}/{d.mig_gi_id}/{d.mig_ci_id}"] = d
            continue
        out.setdefault(str(d.index), d)
        if d.pci_bus_id:
            bus = d.pci_bus_id.lower()
            out.setdefault(bus, d)
            if bus.startswith("0000") and len(bus) == 16:  # NVML's 8-digit domain vs the usual 4
                out.setdefault(bus[4:], d)
    return out


def attribute(allocations: list[Allocation], devices: list[Device], ts: float) -> tuple[list[Sample], int]:
    """The ``pod_info`` samples of the allocations that name one of ``devices``; and how many did not."""
    by_id = _index(devices)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    unmatched = 0
    for a in allocations:
        base, replica = split_replica(a.device_id)
        dev = by_id.get(base) or by_id.get(base.lower())
        if dev is None:
            unmatched += 1
            continue
        labels = (("container", a.container), ("namespace", a.namespace), ("pod", a.pod),
                  ("replica", replica), ("resource", a.resource))
        samples[(dev.uuid, labels)] = Sample(dev.uuid, "pod_info", 1.0, ts, labels)
    return list(samples.values()), unmatched


class PodAttributedSource(Source):
    """Any device source plus the pod each GPU is allocated to (``pod_info``), from kubelet.

    kubelet unreachable (socket missing, API off): one WARNING, the ``podresources`` collector shows
    success 0, and the GPU series go on without attribution; the next successful call logs once more.
    """

    def __init__(self, inner: Source, client: PodResourcesClient) -> None:
        self.inner = inner
        self.client = client
        self.name = inner.name
        self._failing = False

    def __getattr__(self, name: str) -> Any:  # the inner source's own extras (unsupported_fields, twin...)
        if name in ("inner", "client"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.client.close()
        self.inner.close()

    def devices(self) -> list[Device]:
        return self.inner.devices()

    def collect(self, now: float) -> Snapshot:
        snap = self.inner.collect(now)
        started = time.perf_counter()
        error: str | None = None
        try:
            allocations = self.client.list()
        except BackendUnavailable as exc:
            error = str(exc)
            if not self._failing:
                log.warning("%s; GPU series go on without pod labels", exc)
            self._failing = True
        else:
            if self._failing:
                log.warning("kubelet pod-resources API on %s answers again", self.client.socket)
            self._failing = False
            samples, unmatched = attribute(allocations, snap.devices or self.inner.devices(), snap.ts)
            snap.samples.extend(samples)
            if unmatched:
                log.debug("%d pod-resources device ids match no GPU of this exporter", unmatched)
        snap.stats.append(CollectorStat(COLLECTOR, time.perf_counter() - started, error is None, snap.ts, error))
        return snap


def wrap(inner: Source, socket: Path | str = DEFAULT_SOCKET, timeout: float = 2.0) -> PodAttributedSource:
    """``inner`` with pod attribution (raises ConfigError naming the extra when grpcio / protobuf are missing)."""
    messages()
    try:
        import grpc  # noqa: F401
    except ImportError as exc:
        raise ConfigError("exporter.pod_resources needs grpcio and protobuf: pip install 'gpufleet[kubernetes]'") \
            from exc
    return PodAttributedSource(inner, PodResourcesClient(socket, timeout))
