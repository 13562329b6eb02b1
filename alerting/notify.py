"""Notifications through apprise: routes by labels to apprise URLs, templated messages, retries.

A :class:`Route` has a name (the ``channel`` label of the notification metrics), label matchers
(``severity=critical``, ``node=~gpu-0.*``), apprise URLs (``mailto://``, ``slack://``, ``workflows://``,
``tgram://``, ``dingtalk://``, ``feishu://`` / ``lark://``, ``wecombot://``, ``json://`` ...) and
``continue`` (keep matching later routes); Microsoft Teams goes through ``workflows://`` (Teams
workflow webhooks). URLs are checked when the notifier is built. Routes are tried in order; a notification goes to the first
route that matches, plus later ones while ``continue`` is set; when none matches it goes to the routes
without matchers. The ``outbox://DIR`` URL writes each notification as a JSON file (for the demo and
for tests).

Each URL is tried ``retries`` times with exponential backoff. A URL that still fails is logged (with
its secrets masked) and counted in ``gpufleet_notifications_failed_total{channel}``; it never stops the
engine or the other channels.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apprise
import jinja2
from gpufleet.alerting.engine import Alert, Notification
from gpufleet.alerting.silences import Matcher, parse_matcher
from gpufleet.exporter.errors import ConfigError
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

TITLE_TEMPLATE = (
    "[{{ status | upper }}{% if firing %}:{{ firing | length }}{% endif %}] {{ labels.alertname }}"
    "{% if labels.node %} on {{ labels.node }}{% endif %}"
    "{% if labels.severity %} ({{ labels.severity }}){% endif %}"
)
BODY_TEMPLATE = """\
{% for a in firing %}FIRING {{ a.labels.severity | default('') }}: {{ a.annotations.summary | default(a.labels.alertname) }}
  alert: {{ a.labels.alertname }}   node: {{ a.labels.node | default('-') }}   GPU: {{ a.labels.gpu | default('-') }}{% if a.labels.uuid %} ({{ a.labels.uuid }}){% endif %}
  value: {{ a.value | num }}{% if a.threshold is not none %}   threshold: {{ a.threshold | num }}{% endif %}   since: {{ a.active_since | ts }}
  remediation: {{ a.annotations.remediation | default('-') }}
{% if dashboard %}  dashboard: {{ dashboard }}{% if a.labels.uuid %}?var-uuid={{ a.labels.uuid }}{% endif %}
{% endif %}
{% endfor %}{% for a in resolved %}RESOLVED: {{ a.annotations.summary | default(a.labels.alertname) }}
  alert: {{ a.labels.alertname }}   node: {{ a.labels.node | default('-') }}   GPU: {{ a.labels.gpu | default('-') }}{% if a.labels.uuid %} ({{ a.labels.uuid }}){% endif %}
  since: {{ a.active_since | ts }}   resolved: {{ a.resolved_at | ts }}
{% endfor %}"""


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _ts(v: float | None) -> str:
    if v is None:
        return "-"
    return datetime.fromtimestamp(v, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(slots=True)
class Route:
    name: str
    urls: list[str]
    matchers: list[Matcher] = field(default_factory=list)
    continue_: bool = False

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def route_from_dict(d: dict[str, Any]) -> Route:
    """{"name": "pager", "urls": [...], "match": ["severity=critical"], "continue": false} -> Route."""
    if not d.get("name") or not isinstance(d.get("urls"), list):
        raise ConfigError(f"alerting route needs a name and a list of urls: {d!r}")
    return Route(str(d["name"]), [str(u) for u in d["urls"]],
                 [parse_matcher(m) for m in d.get("match", [])], bool(d.get("continue", False)))


class Notifier:
    """Render notifications and deliver them to the routes' apprise URLs."""

    def __init__(self, routes: list[Route], *, dashboard_url: str = "", retries: int = 3,
                 backoff: float = 0.5, registry: CollectorRegistry | None = None,
                 title_template: str = TITLE_TEMPLATE, body_template: str = BODY_TEMPLATE,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ConfigError(f"alerting route names must be unique: {names}")
        for r in routes:
            for url in r.urls:
                check_url(url, r.name)
        self.routes = routes
        self.dashboard_url = dashboard_url
        self.retries = max(1, retries)
        self.backoff = backoff
        self._sleep = sleep
        env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)
        env.filters["num"] = _num
        env.filters["ts"] = _ts
        try:
            self.title_t = env.from_string(title_template)
            self.body_t = env.from_string(body_template)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"notification template: {exc}") from None
        self.registry = registry or CollectorRegistry()
        self.sent_total = Counter("gpufleet_notifications_sent", "Notifications delivered", ["channel"],
                                  registry=self.registry)
        self.failed_total = Counter("gpufleet_notifications_failed", "Notifications that failed after retries",
                                    ["channel"], registry=self.registry)
        for r in routes:
            self.sent_total.labels(r.name)
            self.failed_total.labels(r.name)

    # ------------------------------------------------------------------ rendering
    def render(self, n: Notification) -> tuple[str, str]:
        ctx = {"status": n.status, "labels": n.common_labels(), "group": n.group_labels,
               "firing": n.firing, "resolved": n.resolved, "dashboard": self.dashboard_url}
        return self.title_t.render(ctx).strip(), self.body_t.render(ctx).strip() + "\n"

    def routes_for(self, labels: dict[str, str]) -> list[Route]:
        out: list[Route] = []
        for r in self.routes:
            if r.matchers and r.matches(labels):
                out.append(r)
                if not r.continue_:
                    return out
        return out or [r for r in self.routes if not r.matchers]

    # ------------------------------------------------------------------ delivery
    def __call__(self, n: Notification) -> dict[str, bool]:
        return self.send(n)

    def send(self, n: Notification) -> dict[str, bool]:
        """Deliver to every matching route; returns channel -> delivered. Never raises."""
        title, body = self.render(n)
        results: dict[str, bool] = {}
        for route in self.routes_for(n.common_labels()):
            ok = True
            for url in route.urls:
                ok = self._deliver(route.name, url, title, body, n) and ok
            results[route.name] = ok
        return results

    def _deliver(self, channel: str, url: str, title: str, body: str, n: Notification) -> bool:
        for attempt in range(self.retries):
            try:
                if url.startswith("outbox://"):
                    write_outbox(Path(url[len("outbox://"):]), title, body, n)
                    ok = True
                else:
                    ap = apprise.Apprise()
                    if not ap.add(url):
                        log.error("channel %s: apprise cannot use the URL %s", channel, _mask(url))
                        break
                    ok = bool(ap.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))
            except Exception as exc:  # any channel bug is that channel's failure only
                log.warning("channel %s: %s", channel, exc)
                ok = False
            if ok:
                self.sent_total.labels(channel).inc()
                return True
            if attempt + 1 < self.retries:
                self._sleep(self.backoff * 2 ** attempt)
        log.error("channel %s: notification %r failed after %d attempts (%s)", channel, title,
                  self.retries, _mask(url))
        self.failed_total.labels(channel).inc()
        return False


def check_url(url: str, channel: str = "") -> None:
    """Raise ConfigError when apprise cannot use ``url`` (unknown scheme, malformed token...)."""
    if url.startswith("outbox://"):
        if not url[len("outbox://"):]:
            raise ConfigError(f"route {channel!r}: outbox:// needs a folder, e.g. outbox:///var/lib/gpufleet/outbox")
        return
    if not apprise.Apprise().add(url):
        raise ConfigError(f"route {channel!r}: apprise cannot use the URL {_mask(url)} "
                          "(see https://github.com/caronc/apprise/wiki for each service's URL)")


def _mask(url: str) -> str:
    scheme, sep, _rest = url.partition("://")
    return f"{scheme}{sep}…" if sep else "…"


def alert_payload(a: Alert) -> dict[str, Any]:
    return {"labels": a.labels, "annotations": a.annotations, "state": a.state, "value": a.value,
            "threshold": a.threshold, "active_since": a.active_since, "fired_at": a.fired_at,
            "resolved_at": a.resolved_at}


def write_outbox(folder: Path, title: str, body: str, n: Notification) -> Path:
    """The local outbox channel: one JSON file per notification."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{n.ts:.3f}-{abs(hash((n.group_key, n.ts, title))) % 10**8:08d}"
    path = folder / f"{stem}.json"
    data = {"title": title, "body": body, "status": n.status, "group": n.group_labels,
            "firing": [alert_payload(a) for a in n.firing], "resolved": [alert_payload(a) for a in n.resolved]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


class BackgroundNotifier:
    """Deliver notifications from a worker thread, so retries and slow channels never hold up the
    engine's evaluation (``engine.notify = BackgroundNotifier(notifier)``; ``close()`` drains)."""

    def __init__(self, notifier: Notifier, max_queue: int = 1000) -> None:
        self.notifier = notifier
        self.queue: queue.Queue[Notification | None] = queue.Queue(max_queue)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="gpufleet-notify", daemon=True)
        self.thread.start()

    def __call__(self, n: Notification) -> None:
        try:
            self.queue.put_nowait(n)
        except queue.Full:
            self.dropped += 1
            log.error("notification queue full; dropped %s", n.group_key)

    def _run(self) -> None:
        while True:
            n = self.queue.get()
            try:
                if n is None:
                    return
                self.notifier.send(n)
            except Exception:  # send never raises, but the thread must survive anything
                log.exception("notification worker")
            finally:
                self.queue.task_done()

    def flush(self) -> None:
        """Block until every queued notification was handled."""
        self.queue.join()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=60)
