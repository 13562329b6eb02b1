"""Notifications through apprise to a real SMTP server and a real webhook receiver on loopback."""

from __future__ import annotations

import email
import json
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from gpufleet.alerting.engine import AlertEngine, EngineConfig, Notification
from gpufleet.alerting.notify import Notifier, Route
from gpufleet.alerting.rules import load_rules
from gpufleet.alerting.silences import parse_matcher

from tests.alerting.receiver import WebhookReceiver
from tests.alerting.snapshots import gpu_uuid, snapshot
from tests.servers import free_port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.rcpt: list[list[str]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.cond:
            self.messages.append(email.message_from_bytes(envelope.content))
            self.rcpt.append(list(envelope.rcpt_tos))
            self.cond.notify_all()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    try:
        yield r
    finally:
        r.stop()


def _firing_notification() -> Notification:
    sent: list[Notification] = []
    e = AlertEngine(load_rules(overrides={"GpuTemperatureHigh": {"for": "0s"}}),
                    config=EngineConfig(group_interval=0), notify=sent.append)
    e.step(snapshot(1_700_000_000, "gpu-07", temp={3: 91}, gpus=4), now=1_700_000_000)
    assert len(sent) == 1
    return sent[0]


def _body(msg: Message) -> str:
    if msg.is_multipart():
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                return part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return msg.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_email_arrives_with_subject_and_body(smtp: tuple[int, _Inbox]) -> None:
    port, inbox = smtp
    url = f"mailto://127.0.0.1:{port}/oncall@example.com?from=gpufleet@example.com&mode=insecure"
    notifier = Notifier([Route("email", [url])], dashboard_url="http://grafana.local/d/gpu", retries=1)
    result = notifier.send(_firing_notification())
    assert result == {"email": True}
    msg = inbox.messages[0]
    assert inbox.rcpt[0] == ["oncall@example.com"]
    assert msg["Subject"] == "[FIRING:1] GpuTemperatureHigh on gpu-07 (warning)"
    body = _body(msg)
    assert "GPU 3 on gpu-07 is at 91 °C (above 85 °C for 5m)" not in body  # for was overridden to 0s
    assert "GPU 3 on gpu-07 is at 91 °C (above 85 °C for 0s)" in body
    assert f"GPU: 3 ({gpu_uuid('gpu-07', 3)})" in body
    assert "value: 91   threshold: 85   since: 2023-11-14 22:13:20 UTC" in body
    assert "remediation: Check fans, airflow" in body
    assert f"dashboard: http://grafana.local/d/gpu?var-uuid={gpu_uuid('gpu-07', 3)}" in body
    assert notifier.sent_total.labels("email")._value.get() == 1


def test_json_webhook_payload(webhook: WebhookReceiver) -> None:
    notifier = Notifier([Route("hook", [f"json://127.0.0.1:{webhook.port}/alerts"])], retries=1)
    assert notifier.send(_firing_notification()) == {"hook": True}
    body = webhook.wait(1)[0]
    assert webhook.paths == ["/alerts"]
    assert body["title"] == "[FIRING:1] GpuTemperatureHigh on gpu-07 (warning)"
    assert body["type"] == "info"
    assert "GPU 3 on gpu-07 is at 91 °C" in body["message"]
    assert "severity" not in body  # apprise's own JSON schema: version, title, message, type
    assert body["version"] == "1.0"


def test_failing_channel_is_counted_and_does_not_stop_others(webhook: WebhookReceiver, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    dead = f"json://127.0.0.1:{free_port()}/nobody-listens"
    sleeps: list[float] = []
    notifier = Notifier([
        Route("broken", [dead], continue_=True, matchers=[parse_matcher("severity=~warning|critical")]),
        Route("hook", [f"json://127.0.0.1:{webhook.port}/ok"], continue_=True,
              matchers=[parse_matcher("severity=warning")]),
        Route("outbox", [f"outbox://{tmp_path / 'outbox'}"], matchers=[parse_matcher("node=gpu-07")]),
    ], retries=3, backoff=0.01, sleep=sleeps.append)
    result = notifier.send(_firing_notification())
    assert result == {"broken": False, "hook": True, "outbox": True}
    assert sleeps == [0.01, 0.02]  # exponential backoff between the three attempts
    assert notifier.failed_total.labels("broken")._value.get() == 1
    assert notifier.failed_total.labels("hook")._value.get() == 0
    assert "nobody-listens" not in caplog.text  # URLs (which hold secrets) are masked in logs
    files = list((tmp_path / "outbox").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["status"] == "firing" and data["firing"][0]["labels"]["node"] == "gpu-07"
    assert webhook.wait(1)[0]["title"].startswith("[FIRING:1]")


def test_routing_by_severity() -> None:
    notifier = Notifier([
        Route("pager", ["json://127.0.0.1:9/x"], [parse_matcher("severity=critical")]),
        Route("chat", ["json://127.0.0.1:9/y"]),
    ])
    assert [r.name for r in notifier.routes_for({"severity": "critical"})] == ["pager"]
    assert [r.name for r in notifier.routes_for({"severity": "warning"})] == ["chat"]


def test_background_notifier_delivers_in_order(tmp_path: Path) -> None:
    from gpufleet.alerting.notify import BackgroundNotifier

    notifier = Notifier([Route("outbox", [f"outbox://{tmp_path}"])])
    bg = BackgroundNotifier(notifier)
    n = _firing_notification()
    bg(n)
    bg.flush()
    bg.close()
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert notifier.sent_total.labels("outbox")._value.get() == 1


def test_build_engine_from_settings(tmp_path: Path, webhook: WebhookReceiver) -> None:
    from gpufleet.alerting.notify import BackgroundNotifier
    from gpufleet.alerting.setup import build_engine

    from gpufleet.settings import load_settings

    settings = load_settings(overrides={"data_dir": str(tmp_path), "alerting": {
        "overrides": {"GpuTemperatureHigh": {"for": "0s"}}, "group_interval": 0,
        "routes": [{"name": "hook", "urls": [f"json://127.0.0.1:{webhook.port}/x"]}]}})
    engine = build_engine(settings.alerting, settings.data_dir)
    engine.step(snapshot(100, "gpu-01", temp={0: 95}), now=100)
    assert isinstance(engine.notify, BackgroundNotifier)
    engine.notify.flush()
    assert webhook.wait(1)[0]["title"] == "[FIRING:1] GpuTemperatureHigh on gpu-01 (warning)"
    assert (tmp_path / "alerting" / "state.json").exists()
    engine.notify.close()


@pytest.mark.parametrize("url", [
    "mailtos://smtp.example.com:587/oncall@example.com?from=gpufleet@example.com&user=u&pass=p",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts",
    "workflows://prod-00.westus.logic.azure.com:443/a2b9d8e0123456789abcdef0123456789/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
    "tgram://123456789:abcdefg_hijklmnop/12315544",
    "dingtalk://abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl/",
    "feishu://abcdefghijklmnopqrstuvwxyz0123456789",
    "lark://abcdefghijklmnopqrstuvwxyz0123456789",
    "wecombot://abcdefghijklmnopqrstuvwxyz0123456789",
    "json://alerts.example.com/hook",
])
def test_channel_urls_are_accepted(url: str) -> None:
    notifier = Notifier([Route("channel", [url])])
    assert notifier.routes[0].urls == [url]


def test_unusable_url_is_a_config_error() -> None:
    from gpufleet.exporter.errors import ConfigError

    with pytest.raises(ConfigError, match="route 'pager': apprise cannot use the URL nosuchservice://"):
        Notifier([Route("pager", ["nosuchservice://secret-token"])])
