"""`gpufleet dashboards push` against a small Grafana-API test server on loopback.

No Grafana server can run here; this server checks the requests as Grafana's HTTP API documents them
(folder API: GET /api/folders/:uid, POST /api/folders; dashboard API: POST /api/dashboards/db with
{dashboard, folderUid, overwrite, message}; Bearer token auth) and answers with the documented shapes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gpufleet.cli import main

TOKEN = "glsa_test_token"


class FakeGrafana:
    def __init__(self) -> None:
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.problems: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _auth(self) -> bool:
                outer.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"message": "invalid API key"})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._auth():
                    return
                if self.path.startswith("/api/folders/"):
                    uid = self.path.rsplit("/", 1)[1]
                    if uid in outer.folders:
                        self._send(200, {"uid": uid, "title": outer.folders[uid]})
                    else:
                        self._send(404, {"message": "folder not found"})
                    return
                self._send(404, {"message": "not found"})

            def do_POST(self) -> None:
                if not self._auth():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    outer.problems.append("POST without application/json")
                if self.path == "/api/folders":
                    if set(body) - {"uid", "title", "parentUid"} or "title" not in body:
                        outer.problems.append(f"bad folder body {body}")
                    outer.folders[body["uid"]] = body["title"]
                    self._send(200, {"uid": body["uid"], "title": body["title"], "id": len(outer.folders)})
                elif self.path == "/api/dashboards/db":
                    dash = body.get("dashboard", {})
                    for key in ("dashboard", "folderUid", "overwrite"):
                        if key not in body:
                            outer.problems.append(f"dashboard body lacks {key}")
                    if not dash.get("uid") or not dash.get("title") or dash.get("id") is not None:
                        outer.problems.append(f"bad dashboard model {dash.get('uid')}")
                    if body.get("folderUid") not in outer.folders:
                        self._send(400, {"message": "folder not found"})
                        return
                    if dash["uid"] in outer.dashboards and not body.get("overwrite"):
                        self._send(412, {"status": "version-mismatch",
                                         "message": "The dashboard has been changed by someone else"})
                        return
                    version = outer.dashboards.get(dash["uid"], {}).get("version", 0) + 1
                    outer.dashboards[dash["uid"]] = {"model": dash, "version": version}
                    self._send(200, {"id": 1, "uid": dash["uid"], "url": f"/d/{dash['uid']}/x",
                                     "status": "success", "version": version})
                else:
                    self._send(404, {"message": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    g = FakeGrafana()
    yield g
    g.stop()


def test_push_creates_folder_and_uploads_every_dashboard(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    main(["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN])
    assert grafana.problems == []
    assert list(grafana.folders.values()) == ["gpufleet"]
    assert len(grafana.dashboards) == 7
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["version"] for line in lines} == {1}
    # a second push overwrites: versions go up, folder reused
    main(["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN])
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert ("POST", "/api/folders") in grafana.requests and len(grafana.folders) == 1


def test_push_bad_token_is_one_clear_error(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "push", "--grafana-url", grafana.url, "--token", "wrong"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "refused the token" in err and "401" in err


def test_push_version_conflict_without_overwrite(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    main(["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN])
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN, "--no-overwrite"])
    assert exc.value.code == 1
    assert "changed in Grafana" in capsys.readouterr().err


def test_push_wrong_url_and_unreachable(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "push", "--grafana-url", grafana.url + "/nope", "--token", TOKEN])
    assert "404" in capsys.readouterr().err
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "push", "--grafana-url", "http://127.0.0.1:1", "--token", TOKEN])
    assert exc.value.code == 5
    assert "unreachable" in capsys.readouterr().err
