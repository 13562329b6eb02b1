"""GPU -> pod attribution from the kubelet pod-resources API, against a real gRPC server on a unix socket.

The server (started here, in-process, grpcio) speaks ``v1.PodResourcesLister/List``; the exporter runs
for real (collection loop + /metrics over HTTP) on the fake pynvml, and the test reads what a scrape
serves: whole GPUs, MIG instances, shared (time-sliced) GPUs, a pod going away, kubelet missing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import httpx
import pytest

grpc = pytest.importorskip("grpc")  # the kubernetes extra
pytest.importorskip("google.protobuf")

from gpufleet.exporter.sources.nvml import NvmlSource  # noqa: E402
from gpufleet.exporter.sources.podresources import SERVICE, messages, split_replica, wrap  # noqa: E402

from tests.exporter.fake_pynvml import GIB, FakeGpu, FakeMig, FakeNvml  # noqa: E402
from tests.exporter.harness import run_exporter  # noqa: E402

A100 = "NVIDIA A100-SXM4-40GB"
Pods = list[tuple[str, str, list[tuple[str, list[tuple[str, list[str]]]]]]]
"""(namespace, pod, [(container, [(resource, [device ids])])])"""


class Kubelet:
    """A pod-resources server on a unix socket; ``pods`` is what List answers (changeable)."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.pods: Pods = []
        self.calls = 0
        self._lock = threading.Lock()
        m = messages()
        self._resp = m["ListPodResourcesResponse"]
        handler = grpc.method_handlers_generic_handler(SERVICE, {"List": grpc.unary_unary_rpc_method_handler(
            self._list, request_deserializer=m["ListPodResourcesRequest"].FromString,
            response_serializer=self._resp.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
        self.server.add_insecure_port(f"unix://{socket}")
        self.server.start()

    def set(self, pods: Pods) -> None:
        with self._lock:
            self.pods = pods

    def _list(self, request: object, context: object) -> object:
        with self._lock:
            self.calls += 1
            resp = self._resp()
            for ns, name, containers in self.pods:
                p = resp.pod_resources.add(name=name, namespace=ns)
                for cname, devices in containers:
                    c = p.containers.add(name=cname)
                    for resource, ids in devices:
                        c.devices.add(resource_name=resource, device_ids=ids)
            return resp

    def stop(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Kubelet]:
    k = Kubelet(tmp_path / "kubelet.sock")
    yield k
    k.stop()


def fleet() -> FakeNvml:
    return FakeNvml([
        FakeGpu("GPU-aaaa"), FakeGpu("GPU-bbbb"),
        FakeGpu("GPU-mig0", A100, mig=[FakeMig("MIG-1111", gi=1, ci=0, profile="3g.20gb", memory=20 * GIB),
                                       FakeMig("MIG-2222", gi=2, ci=0, profile="3g.20gb", memory=20 * GIB)]),
    ])


def pod_info(text: str) -> set[tuple[str, ...]]:
    """(uuid, namespace, pod, container, resource, replica) of every gpufleet_gpu_pod_info series served."""
    out = set()
    for line in text.splitlines():
        if not line.startswith("gpufleet_gpu_pod_info{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        assert line.rstrip().endswith(" 1"), line
        out.add(tuple(labels.get(k, "") for k in ("uuid", "namespace", "pod", "container", "resource", "replica")))
    return out


def scrape(exp: object, cycles: int = 1) -> str:
    loop = exp.loop  # type: ignore[attr-defined]
    loop.wait_cycles(loop.cycles + cycles)
    return httpx.get(exp.url, timeout=10).text  # type: ignore[attr-defined]


def test_wire_format_matches_the_v1_field_numbers() -> None:
    # hand-encoded protobuf (tag = field number << 3 | 2 for length-delimited) of the v1 messages
    m = messages()
    dev = m["ContainerDevices"](resource_name="nvidia.com/gpu", device_ids=["GPU-a"])
    assert dev.SerializeToString() == b"\x0a\x0envidia.com/gpu\x12\x05GPU-a"
    pod = m["PodResources"](name="p", namespace="ns")
    pod.containers.add(name="c")
    assert pod.SerializeToString() == b"\x0a\x01p\x12\x02ns\x1a\x03\x0a\x01c"
    resp = m["ListPodResourcesResponse"].FromString(b"\x0a" + bytes([len(pod.SerializeToString())])
                                                    + pod.SerializeToString())
    assert resp.pod_resources[0].namespace == "ns"
    # a newer kubelet's extra fields (cpu_ids = 3 on ContainerResources) are skipped, not an error
    c = m["ContainerResources"].FromString(b"\x0a\x01c\x1a\x02\x01\x02")
    assert c.name == "c"


def test_split_replica() -> None:
    assert split_replica("GPU-aaaa::3") == ("GPU-aaaa", "3")
    assert split_replica("GPU-aaaa") == ("GPU-aaaa", "")
    assert split_replica("MIG-GPU-x/1/0") == ("MIG-GPU-x/1/0", "")


def test_gpus_mig_and_shared_gpus_labelled_and_a_pod_going_away(kubelet: Kubelet) -> None:
    kubelet.set([
        ("ml", "train-0", [("trainer", [("nvidia.com/gpu", ["GPU-aaaa"])]), ("sidecar", [])]),
        ("ml", "infer-a", [("server", [("nvidia.com/gpu", ["GPU-bbbb::0"])])]),   # time-sliced replicas
        ("web", "infer-b", [("server", [("nvidia.com/gpu", ["GPU-bbbb::1"])])]),
        ("ml", "mig-job", [("worker", [("nvidia.com/mig-3g.20gb", ["MIG-1111"])])]),
        ("ml", "legacy-mig", [("worker", [("nvidia.com/mig-3g.20gb", ["MIG-GPU-mig0/2/0"])])]),
        ("other", "not-ours", [("x", [("nvidia.com/gpu", ["GPU-elsewhere"]), ("example.com/nic", ["eth1"])])]),
    ])
    source = wrap(NvmlSource(nvml=fleet().module, node="node-a", xid_wait_ms=20), kubelet.socket)
    with run_exporter(source, interval=1.0) as exp:
        text = scrape(exp)
        assert pod_info(text) == {
            ("GPU-aaaa", "ml", "train-0", "trainer", "nvidia.com/gpu", ""),
            ("GPU-bbbb", "ml", "infer-a", "server", "nvidia.com/gpu", "0"),
            ("GPU-bbbb", "web", "infer-b", "server", "nvidia.com/gpu", "1"),
            ("MIG-1111", "ml", "mig-job", "worker", "nvidia.com/mig-3g.20gb", ""),
            ("MIG-2222", "ml", "legacy-mig", "worker", "nvidia.com/mig-3g.20gb", ""),
        }
        # MIG instances' series carry their parent GPU (the usual identity labels)
        mig = next(line for line in text.splitlines() if line.startswith("gpufleet_gpu_pod_info{")
                   and 'uuid="MIG-1111"' in line)
        assert 'parent_uuid="GPU-mig0"' in mig and 'gpu_instance_id="1"' in mig
        # bounded: the GPU series themselves carry no pod labels
        temp = [line for line in text.splitlines() if line.startswith("gpufleet_gpu_temperature_celsius{")]
        assert temp and not any("pod=" in line for line in temp)
        assert 'gpufleet_collector_success{collector="podresources"' in text
        # a pod goes away, another arrives on the freed replica: exactly those series change
        kubelet.set([
            ("ml", "train-0", [("trainer", [("nvidia.com/gpu", ["GPU-aaaa"])])]),
            ("web", "infer-c", [("server", [("nvidia.com/gpu", ["GPU-bbbb::1"])])]),
        ])
        text = scrape(exp, cycles=2)
        assert pod_info(text) == {
            ("GPU-aaaa", "ml", "train-0", "trainer", "nvidia.com/gpu", ""),
            ("GPU-bbbb", "web", "infer-c", "server", "nvidia.com/gpu", "1"),
        }
    assert kubelet.calls >= 2


def test_gpu_index_device_ids(kubelet: Kubelet) -> None:
    kubelet.set([("ml", "by-index", [("c", [("nvidia.com/gpu", ["1"])])])])
    source = wrap(NvmlSource(nvml=fleet().module, node="node-a", xid_wait_ms=20), kubelet.socket)
    with source:
        snap = source.collect(1.0)
    got = [s for s in snap.samples if s.field == "pod_info"]
    assert [(s.uuid, dict(s.labels)["pod"]) for s in got] == [("GPU-bbbb", "by-index")]


def test_socket_missing_one_warning_exporter_carries_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nowhere" / "kubelet.sock"
    source = wrap(NvmlSource(nvml=fleet().module, node="node-a", xid_wait_ms=20), missing)
    with caplog.at_level(logging.WARNING, logger="gpufleet.exporter.sources.podresources"), \
            run_exporter(source, interval=1.0) as exp:
        text = scrape(exp, cycles=2)
    warned = [r.getMessage() for r in caplog.records if r.name == "gpufleet.exporter.sources.podresources"]
    assert len(warned) == 1 and str(missing) in warned[0] and "does not exist" in warned[0]
    assert "gpufleet_gpu_pod_info{" not in text
    assert re.search(r'gpufleet_gpu_temperature_celsius\{[^}]*uuid="GPU-aaaa"', text)  # GPU series go on
    assert re.search(r'gpufleet_collector_success\{collector="podresources"[^}]*\} 0', text)


def test_kubelet_going_down_and_back(kubelet: Kubelet, caplog: pytest.LogCaptureFixture) -> None:
    kubelet.set([("ml", "train-0", [("trainer", [("nvidia.com/gpu", ["GPU-aaaa"])])])])
    source = wrap(NvmlSource(nvml=fleet().module, node="node-a", xid_wait_ms=20), kubelet.socket)
    caplog.set_level(logging.WARNING, logger="gpufleet.exporter.sources.podresources")
    with source:
        assert any(s.field == "pod_info" for s in source.collect(1.0).samples)
        kubelet.stop()  # kubelet goes away (grpc removes its socket file)
        for t in range(2, 5):
            snap = source.collect(float(t))
            assert not any(s.field == "pod_info" for s in snap.samples)
            assert snap.value("GPU-aaaa", "temperature_gpu") is not None
            stat = next(s for s in snap.stats if s.collector == "podresources")
            assert not stat.success and str(kubelet.socket) in (stat.error or "")
        down = [r for r in caplog.records if "pod-resources" in r.getMessage()]
        assert len(down) == 1
        back = Kubelet(kubelet.socket)  # kubelet restarts on the same socket
        try:
            back.set(kubelet.pods)
            snap = source.collect(6.0)
        finally:
            back.stop()
    assert [s.uuid for s in snap.samples if s.field == "pod_info"] == ["GPU-aaaa"]
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_socket_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    from gpufleet.exporter.errors import BackendUnavailable
    from gpufleet.exporter.sources.podresources import PodResourcesClient

    dead = tmp_path / "kubelet.sock"
    dead.write_text("")  # a stale file where the socket should be: nothing listens
    client = PodResourcesClient(dead, timeout=1.0)
    try:
        with pytest.raises(BackendUnavailable, match=r"pod-resources List on .*kubelet.sock failed: UNAVAILABLE"):
            client.list()
    finally:
        client.close()


def test_grpc_stays_out_of_the_exporter_base_import_path() -> None:
    import subprocess
    import sys

    code = ("import sys, gpufleet.exporter.sources.nvml, gpufleet.exporter.loop, gpufleet.exporter.sinks.prometheus, "
            "gpufleet.wiring; print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
