"""The service's side of the state: which database, and the alert engine's backends over it (with the
one-time import of ``alerting/silences.json`` and ``alerting/state.json`` from older versions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.state import open_state
from gpufleet.state.legacy import read_json, retire
from gpufleet.state.store import AlertStateBackend, SilenceBackend


def database_url(settings: Any, data_dir: Path) -> str:
    """The service's database (users, audit and control-plane state): ``api.database_url`` or SQLite."""
    from gpufleet.api.context import database_url as api_url

    return api_url(settings.api, data_dir)


def alert_backends(settings: Any, data_dir: Path) -> tuple[SilenceBackend, AlertStateBackend]:
    """Silence and alert-state rows in the service's database; older JSON files imported once."""
    from gpufleet.alerting.setup import state_dir

    store = open_state(database_url(settings, data_dir))
    silences, alerts = store.silences_backend(), store.alert_backend()
    folder = state_dir(settings.alerting, data_dir)
    old = folder / "silences.json"
    raw = read_json(old)
    if raw is not None:
        if not silences.load():
            for d in raw or []:
                silences.put(d)
        retire(old)
    old = folder / "state.json"
    data = read_json(old)
    if data is not None:
        have, groups = alerts.load()
        if not have and not groups:
            alerts.write(list(data.get("alerts", [])), [], {str(k): float(v) for k, v in data.get("groups", {}).items()})
        retire(old)
    return silences, alerts


def db_silences(settings: Any) -> Any:
    """The silence store the CLI uses: the same database rows as the running service."""
    from gpufleet.alerting.setup import silences_from

    silences, _ = alert_backends(settings, Path(settings.data_dir))
    return silences_from(settings.alerting, Path(settings.data_dir), backend=silences)
