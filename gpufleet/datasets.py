"""The public datasets gpufleet's commands read, where each comes from, and how to fetch it.

Every dataset is pinned to a revision of its source repository; every file has its SHA-256. ``fetch``
downloads each file from ``https://raw.githubusercontent.com/<repo>/<revision>/<path>`` (or a mirror laid
out the same way), checks the digest before anything is kept, and writes the folder layout the commands
read (the same as the project's own copy, so ``--data`` works with either). Nothing here is bundled: the
data's licences are their authors' (see each entry).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gpufleet.exporter.errors import BackendUnavailable, ConfigError, InputError, NotFound

GITHUB_RAW = "https://raw.githubusercontent.com"
_EARTH = "analysis/2_cluster characterization/Earth_vcs/"


@dataclass(frozen=True)
class DataFile:
    path: str  # inside the dataset folder
    source: str  # inside the source repository
    sha256: str


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    repo: str
    revision: str
    license: str
    used_by: str
    files: tuple[DataFile, ...]

    def url(self, f: DataFile, base: str = GITHUB_RAW) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.revision}/{quote(f.source)}"


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("titan", "titan-gpu-lifetimes", "olcf/TitanGPULife", "f3303559ff63d341eb913ac530267b412d30ed7e",
            "no license file; cite Ostrouchov et al., SC '20", "gpufleet failure evaluate --dataset titan", (
                DataFile("gc_full.csv", "data/gc_full.csv", "a1f29b9b9b67c1e8ef2370cbaf783e4eeb7ba9ccadc5511ca7056d8feeeefed8"),
                DataFile("gc_summary_loc.csv", "data/gc_summary_loc.csv", "07ece0f04e2bf20eb7c9e7eba05f6cd772ea89da08af5761be403635d3490ada"),
                DataFile("titan.service.txt", "data/titan.service.txt", "dba066fad3f96bdd7602d11eeea5270da30864d788108fd030e04be05326ad3e"),
            )),
    Dataset("infinitehbd", "infinitehbd-faults", "stepfun-ai/InfiniteHBD-Trace",
            "7aacdc8c3d2352c5b784bc0ea31756e1620daed1", "Apache-2.0", "gpufleet failure evaluate --dataset infinitehbd", (
                DataFile("infinitehbd_fault_trace.json", "fault_trace.json", "5871b881b341c9526223c025eda3a9bd2f0f875cf8d53441688ccd953e11b80d"),
                DataFile("infinitehbd_fault_statistics.json", "fault_statistics.json", "de6f73a082892b2c8a157cf1ffb70d00a3e392acd49ff012bd34ebd090866eda"),
            )),
    Dataset("helios", "helios-earth-vc", "S-Lab-System-Group/HeliosArtifact",
            "bdaae109c21f8038a2331e6a23a582d5ae78ab5b", "MIT (artifact), CC BY 4.0 (trace); cite Hu et al., SC '21",
            "gpufleet forecast helios, gpufleet forecast autoscale, gpufleet report capacity --helios", (
                DataFile("Earth_gpu_number.csv", _EARTH + "Earth_gpu_number.csv", "cd85b21f9b2651a64ed7ecb86f2c5dea771a3bd55d41537eea976b61aa00642f"),
                DataFile("helios_cluster_summary.csv", "analysis/1_compare with Philly trace/helios_cluster_summary.csv",
                         "9cfbef77bdcfab43e0ffbc886e9d8ca8ac0dd16528945c52d76693179a6122f6"),
                DataFile("vc_sequences/vc3sl_cluster_sequence_vc.csv", _EARTH + "vc3sl/cluster_sequence_vc.csv",
                         "bed4c00def988d7661e579b07e4ead3c0324e7709a5682da32caa63c4d892bf8"),
                DataFile("vc_sequences/vc6YE_cluster_sequence_vc.csv", _EARTH + "vc6YE/cluster_sequence_vc.csv",
                         "a3f5604c54c0dcf630cc7c5c4f4b9194ee64276dc3697f748a159ea0a3ac937a"),
                DataFile("vc_sequences/vc8Sj_cluster_sequence_vc.csv", _EARTH + "vc8Sj/cluster_sequence_vc.csv",
                         "e264563f228765b06c3c12a50644955adac286c99e9c73ec0294d0deb80a4282"),
                DataFile("vc_sequences/vcJLV_cluster_sequence_vc.csv", _EARTH + "vcJLV/cluster_sequence_vc.csv",
                         "457307875a07db4b771c9a665fd9c171b16ff8832ec1b40056bd47b7d06f3b49"),
                DataFile("vc_sequences/vcJkd_cluster_sequence_vc.csv", _EARTH + "vcJkd/cluster_sequence_vc.csv",
                         "6543a83fd69b0e85ebb34d2a35a2e0a81d747db0a255917845b343c34b1df0a3"),
                DataFile("vc_sequences/vcLJZ_cluster_sequence_vc.csv", _EARTH + "vcLJZ/cluster_sequence_vc.csv",
                         "e70279198452ec2518774285e9b2e435d4aeb26f019036897446ecba295529fe"),
                DataFile("vc_sequences/vcMod_cluster_sequence_vc.csv", _EARTH + "vcMod/cluster_sequence_vc.csv",
                         "e16e824d75051409c08228cf65ead8e2609dc607f26216129b7c38b5d3d2e0ef"),
                DataFile("vc_sequences/vcSoL_cluster_sequence_vc.csv", _EARTH + "vcSoL/cluster_sequence_vc.csv",
                         "4f0544ebde6712a5e9110a7c4a54a5ebafd86a543fa6d2c4baf48d455bf161c2"),
                DataFile("vc_sequences/vcTJs_cluster_sequence_vc.csv", _EARTH + "vcTJs/cluster_sequence_vc.csv",
                         "9d29704b3ce07af9ee96af51cd516a7b7f6d9f0b3523c9d479f44c517dd91fd3"),
                DataFile("vc_sequences/vccaA_cluster_sequence_vc.csv", _EARTH + "vccaA/cluster_sequence_vc.csv",
                         "b60fe669a9c92a1437e61cf6b4a0b14574587d19149b20e9445f12b965e4b8ab"),
                DataFile("vc_sequences/vcdI0_cluster_sequence_vc.csv", _EARTH + "vcdI0/cluster_sequence_vc.csv",
                         "8af4778084bb755b3b5b106daf46603ae33993a5cc463b094ba2c1bfe2d63ef6"),
                DataFile("vc_sequences/vcgkz_cluster_sequence_vc.csv", _EARTH + "vcgkz/cluster_sequence_vc.csv",
                         "4933b4cd750b174fb25ab6d6a03702f2e945a4200bc68047a41aab74efa82dbb"),
                DataFile("vc_sequences/vchbv_cluster_sequence_vc.csv", _EARTH + "vchbv/cluster_sequence_vc.csv",
                         "fed830fdf39248e46b3078e47dd7518203afd826c55d5a0d136cc761050c3e7b"),
                DataFile("vc_sequences/vcira_cluster_sequence_vc.csv", _EARTH + "vcira/cluster_sequence_vc.csv",
                         "3c3bb05f0df42035c30c51f90b0b8d8796657bac0f9bf5087f773fb1eb6438db"),
                DataFile("vc_sequences/vcpDC_cluster_sequence_vc.csv", _EARTH + "vcpDC/cluster_sequence_vc.csv",
                         "b97626a5c0399ba269150364df94a855d29decf986c0209040a90571bb67fded"),
                DataFile("vc_sequences/vcvlY_cluster_sequence_vc.csv", _EARTH + "vcvlY/cluster_sequence_vc.csv",
                         "78ccae5d844f89cd183bd3fd260363285d06e04441c581aea19dd9b1c54c7657"),
            )),
    Dataset("openb", "alibaba-openb", "alibaba/clusterdata", "7a6c496e4f4b6ce6150be8f881cb051bf2abff42",
            "research or study use; cite Weng et al., ATC '23", "gpufleet allocator replay", (
                DataFile("csv/openb_node_list_all_node.csv", "cluster-trace-gpu-v2023/csv/openb_node_list_all_node.csv",
                         "5a85c2af79c66a1efff8bbcbda430400aae56d8431370d738480967e1a9c6b15"),
                DataFile("csv/openb_node_list_gpu_node.csv", "cluster-trace-gpu-v2023/csv/openb_node_list_gpu_node.csv",
                         "2beca64b4d3dfa342036a34b56a495c6cef9225db836c81f541282cb1df320b5"),
                DataFile("csv/openb_pod_list_cpu050.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_cpu050.csv",
                         "747f43247bffc2b0bb081d7f61f0705ca8d390dafc0b647e642c92f3baf3ba1e"),
                DataFile("csv/openb_pod_list_cpu100.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_cpu100.csv",
                         "bec1c33fbdde61fd463877534ec79b393aec73e1cbb22d55fab9f166ac480982"),
                DataFile("csv/openb_pod_list_default.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_default.csv",
                         "1ee7ed79c27a3b0861cda8ddba86a004c6aba904caafa329a76ae93ca63834a8"),
                DataFile("csv/openb_pod_list_gpushare100.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_gpushare100.csv",
                         "12dbc07d6a49bf8641e2275a2ff5bf7be74b5df7d148d531e135b140b95f9a3d"),
                DataFile("csv/openb_pod_list_gpushare20.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_gpushare20.csv",
                         "9be2d0efb52e242c32e23dd184cc5fcc1983478c6c9c02cbb6b4b62925c0ffcd"),
                DataFile("csv/openb_pod_list_gpushare40.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_gpushare40.csv",
                         "d83ce79a4eb6987524bedbb0c65e41aed3a36bf6c1b78b86234c3687a07e1d40"),
                DataFile("csv/openb_pod_list_gpushare60.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_gpushare60.csv",
                         "d31809628128a1f24491086eda4af3e23882b9213d3ef57a56ee2d1af69492fe"),
                DataFile("csv/openb_pod_list_gpushare80.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_gpushare80.csv",
                         "88b6649369ced40d0fde287d2498ea61ff4b05fccba8bdc95daf6042f2f8431e"),
                DataFile("csv/openb_pod_list_multigpu20.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_multigpu20.csv",
                         "d9ec6f6c74fb980cc0b81239470c6353fceea077ea9abd610003b604c7cc2b01"),
                DataFile("csv/openb_pod_list_multigpu30.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_multigpu30.csv",
                         "a5e479c6444b1d83eef848159cf00c3cfa13441b2d1e2c113c391b91f1cc5b11"),
                DataFile("csv/openb_pod_list_multigpu40.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_multigpu40.csv",
                         "32c9e8731ca07ef96108aa65f2a289bb9aacb47f642ed9e3789f99b242df60eb"),
                DataFile("csv/openb_pod_list_multigpu50.csv", "cluster-trace-gpu-v2023/csv/openb_pod_list_multigpu50.csv",
                         "206f2f5959db30ecb7c44e7f13197c8ec50b7a35558ad3777cc3662ef0fe5373"),
            )),
)}


def dataset(name: str) -> Dataset:
    got = DATASETS.get(name)
    if got is None:
        raise ConfigError(f"unknown dataset {name!r}; one of {', '.join(sorted(DATASETS))}")
    return got


def datasets_root(data_dir: Path) -> Path:
    """Where `gpufleet data fetch` puts datasets by default: ``<data dir>/datasets``."""
    return data_dir / "datasets"


def default_path(name: str, data_dir: Path) -> Path:
    return datasets_root(data_dir) / dataset(name).folder


def require(name: str, path: Path) -> Path:
    """``path`` when it exists; else NotFound saying how to fetch the dataset (one line)."""
    if not path.exists():
        raise NotFound(f"no {name} data at {path}: fetch it with `gpufleet data fetch {name}` "
                       f"(or pass --data FOLDER)")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, dest: Path, *, base_url: str = GITHUB_RAW, timeout: float = 60.0,
          progress: Callable[[DataFile, int], None] | None = None) -> list[Path]:
    """Download every file of dataset ``name`` into ``dest`` (the dataset folder) and check its SHA-256.

    A file already there with the right digest is kept. Each download goes to a temporary file beside its
    target and replaces it only once its digest matches, so a failed or wrong download leaves nothing
    behind. Raises BackendUnavailable when the source cannot be reached (offline), InputError on a digest
    mismatch or an HTTP error."""
    import httpx

    ds = dataset(name)
    written: list[Path] = []
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for f in ds.files:
            target = dest / f.path
            if target.exists() and _sha256(target) == f.sha256:
                written.append(target)
                continue
            url = ds.url(f, base_url)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                size = 0
                with os.fdopen(fd, "wb") as out, client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise InputError(f"{url} answered HTTP {resp.status_code}", path=f.path)
                    for chunk in resp.iter_bytes(1 << 20):
                        out.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                if h.hexdigest() != f.sha256:
                    raise InputError(f"SHA-256 mismatch for {url}: got {h.hexdigest()}, expected {f.sha256} "
                                     f"(nothing kept)", path=f.path)
                tmp.replace(target)
                written.append(target)
                if progress is not None:
                    progress(f, size)
            except httpx.TransportError as exc:
                host = httpx.URL(url).host
                raise BackendUnavailable(f"cannot reach {host} to fetch {name} ({type(exc).__name__}: {exc}); "
                                         f"offline? fetch on a connected machine and copy {dest}, or pass "
                                         f"--mirror URL") from None
            finally:
                tmp.unlink(missing_ok=True)
    return written
