"""Inventory: spec table, built-in fleet, real node-list formats, and errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpufleet.exporter.errors import InputError
from gpufleet.simulator.inventory import SPECS, default_inventory, load_inventory, resolve_model

from tests.servers import require_data


def test_default_fleet_mixes_a100_h100_l40s_with_stable_uuids() -> None:
    inv = default_inventory()
    assert len(inv.nodes) == 4 and len(inv) == 32
    assert {n.gpus[0].spec.model for n in inv.nodes} == {"A100-SXM4-80GB", "H100-SXM5-80GB", "L40S"}
    again = default_inventory()
    assert [g.uuid for _, g in inv.gpus] == [g.uuid for _, g in again.gpus]
    assert len({g.uuid for _, g in inv.gpus}) == 32
    assert all(g.uuid.startswith("GPU-") for _, g in inv.gpus)


def test_spec_table_has_the_data_sheet_figures() -> None:
    a100, h100, l40s = SPECS["A100-SXM4-80GB"], SPECS["H100-SXM5-80GB"], SPECS["L40S"]
    assert a100.tdp_w == 400 and a100.nvlink_links == 12 and a100.memory_bytes == 80 * 2**30
    assert h100.tdp_w == 700 and h100.nvlink_links == 18 and h100.gpm
    assert l40s.nvlink_links == 0 and not l40s.hbm and not a100.gpm
    assert all(s.slowdown_c < s.shutdown_c for s in SPECS.values())
    for name in ("A100", "H100", "H200", "V100M32", "P100", "T4", "A10", "L40S"):
        assert resolve_model(name).model in SPECS


def test_openb_and_spot_node_lists_load() -> None:
    openb = load_inventory(require_data("alibaba-openb", "csv", "openb_node_list_gpu_node.csv"),
                           aliases={"G2": "A10", "G3": "T4"}, max_nodes=300)
    assert len(openb.nodes) == 300
    assert {g.spec.model for _, g in openb.gpus} >= {"P100-PCIE-16GB", "T4"}
    spot = load_inventory(require_data("alibaba-spot-gpu-2026", "node_info_df.csv"),
                          aliases={"GPU-series-1": "A10", "GPU-series-2": "L40S"})
    assert sum(len(n.gpus) for n in spot.nodes) == 10412
    assert any(g.spec.model == "H800-SXM5-80GB" for _, g in spot.gpus)


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "nodes.csv"
    p.write_text(text)
    return p


def test_malformed_count_names_file_line_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,8,A100\nn1,1,1,eight,A100\n")
    with pytest.raises(InputError) as e:
        load_inventory(p)
    assert e.value.line == 3 and e.value.column == "gpu" and str(p) in str(e.value)
    assert "whole number" in str(e.value)


def test_unknown_model_lists_known_models_and_how_to_add(tmp_path: Path) -> None:
    p = _write(tmp_path, "gpu_model,gpu_capacity_num,cpu_num,node_name\nB300,8,128,1\n")
    with pytest.raises(InputError) as e:
        load_inventory(p)
    msg = str(e.value)
    assert e.value.line == 2 and e.value.column == "gpu_model"
    assert "A100-SXM4-80GB" in msg and "H100-SXM5-80GB" in msg and "register_spec" in msg and "--alias" in msg


def test_unrecognised_header_and_wrong_column_count(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="openb node list columns"):
        load_inventory(_write(tmp_path, "host,gpus\nx,1\n"))
    with pytest.raises(InputError) as e:
        load_inventory(_write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,8\n"))
    assert e.value.line == 2 and "5 columns" in str(e.value)
