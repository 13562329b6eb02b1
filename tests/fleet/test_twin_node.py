"""One node of the twin fleet per exporter (`--twin-node`): the same seed gives every process the same
fleet, so the nodes exported one by one are exactly the whole twin; bad node names and fault specs get
one clear error."""

from __future__ import annotations

import time

import pytest
from gpufleet.exporter.errors import ConfigError
from gpufleet.simulator.twin import TwinConfig, TwinSource

from gpufleet.wiring import parse_twin_fault


def test_nodes_one_by_one_are_the_whole_twin() -> None:
    cfg = TwinConfig(nodes=3, gpus_per_node=4, seed=5, failures=False)
    whole = {d.uuid: d for d in TwinSource(cfg).devices()}
    parts: dict[str, object] = {}
    for node in sorted({d.node for d in whole.values()}):
        src = TwinSource(TwinConfig(nodes=3, gpus_per_node=4, seed=5, failures=False), node=node)
        src.open()
        snap = src.collect(time.time())
        assert {d.node for d in snap.devices} == {node} and len(snap.devices) == 4
        assert {s.uuid for s in snap.samples if s.uuid} == {d.uuid for d in snap.devices}
        parts.update({d.uuid: d for d in snap.devices})
    assert parts == whole


def test_unknown_twin_node_and_bad_faults() -> None:
    with pytest.raises(ConfigError, match="'nope' is not a node of the twin"):
        TwinSource(TwinConfig(nodes=2, gpus_per_node=1), node="nope")
    assert parse_twin_fault("fall_off_bus:3:60") == ("fall_off_bus", 3, 60.0)
    for bad in ("fall_off_bus", "fall_off_bus:x:1", "fall_off_bus:1:2:3", "melt:0:1", "fall_off_bus:-1:0"):
        with pytest.raises(ConfigError, match="twin fault"):
            parse_twin_fault(bad)
