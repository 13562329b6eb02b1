"""The allocator cluster's layout in the service's database: which node sits at which index and which
GPU in which slot, with each node's capacity and each GPU's identity.

Placements are kept as (node index, GPU slot) pairs, so a restart must rebuild the cluster in the order it
had: the fleet may have grown while the service ran (a node that joined later sits after the others), and a
node may be silent at the restart. The layout is one ``queue_meta`` row (key ``cluster_layout``), rewritten
only when the cluster grows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from gpufleet.state.store import _META, StateStore, _upsert

KEY = "cluster_layout"


def load_layout(store: StateStore) -> list[dict[str, Any]] | None:
    """The stored nodes in cluster order, or None when no layout was ever stored."""
    try:
        with store.db.engine.connect() as conn:
            value = conn.execute(select(_META.c.value).where(_META.c.key == KEY)).scalar()
    except SQLAlchemyError as exc:
        raise store._fail(exc, "reading the cluster layout") from None
    if not isinstance(value, dict) or not isinstance(value.get("nodes"), list):
        return None
    return list(value["nodes"])


def save_layout(store: StateStore, nodes: list[dict[str, Any]]) -> None:
    try:
        with store.db.engine.begin() as conn:
            _upsert(conn, _META, [{"key": KEY, "value": {"version": 1, "nodes": nodes}}])
    except SQLAlchemyError as exc:
        raise store._fail(exc, "writing the cluster layout") from None
