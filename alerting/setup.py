"""Build the engine and notifier from the alerting settings section (for `serve` and the CLI).

The section is duck-typed (``gpufleet.settings.AlertingSettings``): alerting does not import the
application package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.alerting.engine import AlertEngine, AlertStateBackend, EngineConfig
from gpufleet.alerting.notify import BackgroundNotifier, Notifier, Route
from gpufleet.alerting.rules import RuleSet, load_rules
from gpufleet.alerting.silences import SilenceBackend, SilenceStore, parse_matcher
from prometheus_client import CollectorRegistry


def state_dir(section: Any, data_dir: Path) -> Path:
    return Path(section.state_dir) if section.state_dir else Path(data_dir) / "alerting"


def rules_from(section: Any) -> RuleSet:
    return load_rules(list(section.rule_files), include_pack=section.include_pack, overrides=section.overrides)


def notifier_from(section: Any, registry: CollectorRegistry | None = None) -> Notifier:
    routes = [Route(r.name, [u.get_secret_value() if hasattr(u, "get_secret_value") else str(u) for u in r.urls],
                    [parse_matcher(m) for m in r.match], bool(r.continue_)) for r in section.routes]
    return Notifier(routes, dashboard_url=section.dashboard_url, retries=section.retries, backoff=section.backoff,
                    registry=registry)


def silences_from(section: Any, data_dir: Path, backend: SilenceBackend | None = None) -> SilenceStore:
    return SilenceStore(state_dir(section, data_dir) / "silences.json", backend=backend)


def build_engine(section: Any, data_dir: Path, registry: CollectorRegistry | None = None, *,
                 silence_backend: SilenceBackend | None = None,
                 state_backend: AlertStateBackend | None = None) -> AlertEngine:
    """The engine with the pack + rule files, persisted state, silences and the apprise notifier.

    Call ``engine.step(snapshots)`` after each collection cycle; ``engine.reload_rules()`` on SIGHUP
    or when a rule file changed (a bad file keeps the last good rules).
    """
    config = EngineConfig(group_by=tuple(section.group_by), group_wait=section.group_wait,
                          group_interval=section.group_interval, repeat_interval=section.repeat_interval,
                          stale_after=section.stale_after, dashboard_url=section.dashboard_url)
    sd = state_dir(section, data_dir)
    return AlertEngine(rules_from(section), config=config, state_dir=sd, state_backend=state_backend,
                       silences=SilenceStore(sd / "silences.json", backend=silence_backend),
                       notify=BackgroundNotifier(notifier_from(section, registry)),
                       reload=lambda: rules_from(section))
