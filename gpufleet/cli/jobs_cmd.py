"""CLI: `gpufleet jobs submit | list | show | cancel | logs`, against a running `gpufleet serve`.

Every command talks to the service's API (``--url``, default ``http://<api.listen>`` from the settings) with
a token: ``--token-file`` (a file holding an access token) or ``--user`` with ``--password-file`` (the
command logs in, and logs in again when a long ``logs --follow`` outlives the token). A job file is checked
here first (YAML or JSON, every field known, no dependency cycle), so a bad file is refused with every
reason before anything is sent; the service then checks the batch against the fleet, all or nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from gpufleet.exporter.errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    GpufleetError,
    InputError,
    NotFound,
)

jobs_app = typer.Typer(help="Jobs on a running `gpufleet serve`: submit a batch, list, show, cancel, follow logs.",
                       no_args_is_help=True)

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})

Url = typer.Option(None, "--url", help="The service's API (default: http://<api.listen> from the settings).")
TokenFile = typer.Option(None, "--token-file", help="File holding an access token (from POST /auth/login).")
User = typer.Option(None, "--user", "-u", help="Log in as this user (with --password-file).")
PasswordFile = typer.Option(None, "--password-file", help="File holding the password of --user.")
CaFile = typer.Option(None, "--ca-file", help="CA bundle that signed the service's TLS certificate.")
Config = typer.Option(None, "--config", "-c", help="TOML settings file (for the default --url).")


class ApiClient:
    """A small client of the gpufleet API: a bearer token, problem+json errors as typed errors.

    An unreachable service is :class:`BackendUnavailable`; 401 :class:`ConfigError` (wrong credentials);
    404 :class:`NotFound`; 409 :class:`Conflict`; 400 / 422 :class:`InputError` with every reason the
    service gave; anything else :class:`GpufleetError` with the service's detail.
    """

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None,
                 password: str | None = None, verify: str | bool = True, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._user, self._password = user, password
        self._token = token
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            return self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise BackendUnavailable(f"gpufleet serve at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            why = str(exc) or type(exc).__name__
            raise BackendUnavailable(f"cannot reach gpufleet serve at {self.url}: {why} "
                                     "(is `gpufleet serve` running? see --url)") from None

    def login(self) -> None:
        if self._user is None or self._password is None:
            raise ConfigError("no credentials: pass --token-file FILE, or --user NAME with --password-file FILE")
        r = self._send("POST", "/auth/login", json={"username": self._user, "password": self._password})
        if r.status_code != 200:
            raise ConfigError(f"login as {self._user!r} failed: {_detail(r)}")
        self._token = r.json()["access_token"]

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """The decoded JSON answer of one API call (logging in first, and again once on a 401)."""
        if self._token is None:
            self.login()
        r = self._send(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kw)
        if r.status_code == 401 and self._user is not None:
            self.login()
            r = self._send(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kw)
        if r.status_code < 400:
            return r.json() if r.content else None
        detail = _detail(r)
        if r.status_code == 401:
            raise ConfigError(f"the service refused the token: {detail}")
        if r.status_code == 404:
            raise NotFound(detail)
        if r.status_code == 409:
            raise Conflict(detail)
        if r.status_code in (400, 422):
            raise InputError(detail)
        raise GpufleetError(f"{method} {path}: HTTP {r.status_code}: {detail}")


def _detail(r: Any) -> str:
    """The reason in a problem+json answer (every field error of a 422), else the body's text."""
    try:
        doc = r.json()
    except ValueError:
        return (r.text or f"HTTP {r.status_code}").strip()[:500]
    if not isinstance(doc, dict):
        return str(doc)[:500]
    errors = doc.get("errors")
    if isinstance(errors, list) and len(errors) > 1:
        return "; ".join(f"{e.get('field')}: {e.get('message')}" if isinstance(e, dict) else str(e) for e in errors)
    return str(doc.get("detail") or doc.get("title") or f"HTTP {r.status_code}")


def _client(url: str | None, token_file: Path | None, user: str | None, password_file: Path | None,
            ca_file: Path | None, config: Path | None) -> ApiClient:
    token = _read_secret(token_file, "--token-file") if token_file else None
    password = _read_secret(password_file, "--password-file") if password_file else None
    if token is None and (user is None or password is None):
        raise ConfigError("no credentials: pass --token-file FILE, or --user NAME with --password-file FILE")
    verify: str | bool = str(ca_file) if ca_file else True
    if url is None:
        from gpufleet.settings import load_settings

        api = load_settings(config).api
        scheme = "https" if api.tls_cert and api.tls_key else "http"
        url = f"{scheme}://{api.listen}"
        if scheme == "https" and ca_file is None:
            verify = str(api.tls_cert)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url must start with http:// or https://, got {url!r}")
    return ApiClient(url, token=token, user=user, password=password, verify=verify)


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise ConfigError(f"{what}: {path} is empty")
    return text


# -- the job file ------------------------------------------------------------------------------------------
def read_job_file(path: Path) -> list[dict[str, Any]]:
    """The jobs of a YAML or JSON file (a list, ``{jobs: [...]}`` or one job), each checked against the API's
    job schema; every problem (unknown field, wrong type, bad name, a dependency cycle) in one InputError."""
    import yaml
    from pydantic import ValidationError

    from gpufleet.allocator.jobs import find_cycle
    from gpufleet.api.schemas import JobCreate

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML or JSON: {problem}", path=str(path),
                         line=mark.line + 1 if mark is not None else None) from None
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError("expected a list of jobs (or a mapping with a 'jobs' list)", path=str(path))
    reasons: list[str] = []
    jobs: list[dict[str, Any]] = []
    for i, raw in enumerate(data):
        who = f"job {raw.get('name', i + 1) if isinstance(raw, dict) else i + 1}"
        if not isinstance(raw, dict):
            reasons.append(f"{who}: expected a mapping of fields, got {type(raw).__name__}")
            continue
        try:
            jobs.append(JobCreate.model_validate(raw).model_dump(exclude_none=True))
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"])
                msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
                reasons.append(f"{who}: {where}: {msg}")
    if not reasons:
        key = {j.get("client_id") or j["name"]: j["name"] for j in jobs}
        cycle = find_cycle({j["name"]: [key.get(d, d) for d in j.get("depends_on", [])] for j in jobs})
        if cycle:
            reasons.append(f"dependency cycle: {' -> '.join(cycle)}")
    if reasons:
        raise InputError(f"{len(reasons)} problem(s), nothing submitted: {'; '.join(reasons)}", path=str(path))
    return jobs


# -- commands ------------------------------------------------------------------------------------------------
@jobs_app.command("submit")
def submit(
    file: Path = typer.Option(..., "--file", "-f", help="YAML or JSON: a list of jobs, or {jobs: [...]}."),
    as_json: bool = typer.Option(False, "--json", help="Print the accepted jobs as JSON."),
    url: str | None = Url, token_file: Path | None = TokenFile, user: str | None = User,
    password_file: Path | None = PasswordFile, ca_file: Path | None = CaFile, config: Path | None = Config,
) -> None:
    """Submit a batch of jobs (all or nothing: a refused batch lists every reason, exit 3).

    Example: gpufleet jobs submit -f job.yaml --user admin --password-file pw.txt
    """
    jobs = read_job_file(file)
    client = _client(url, token_file, user, password_file, ca_file, config)
    try:
        accepted = client.request("POST", "/jobs", json={"jobs": jobs})
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(accepted, indent=2))
        return
    for j in accepted:
        where = f" on {j['node']}" if j.get("node") else ""
        typer.echo(f"{j['id']}  {j['state']}{where}")


def _rows(client: ApiClient, state: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 1000, "offset": len(out)}
        if state:
            params["state"] = state
        page = client.request("GET", "/jobs", params=params)
        out.extend(page["items"])
        if not page["items"] or len(out) >= page["total"]:
            return out


@jobs_app.command("list")
def list_jobs(
    state: str | None = typer.Option(None, "--state", help="Only jobs in this state (pending, running, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    url: str | None = Url, token_file: Path | None = TokenFile, user: str | None = User,
    password_file: Path | None = PasswordFile, ca_file: Path | None = CaFile, config: Path | None = Config,
) -> None:
    """List jobs, newest first (developers see their own).

    Example: gpufleet jobs list --state running --user admin --password-file pw.txt
    """
    states = ("pending", "placed", "starting", "running", "succeeded", "failed", "cancelled", "interrupted",
              "requeued")
    if state is not None and state not in states:
        raise ConfigError(f"--state must be one of {', '.join(states)}, got {state!r}")
    client = _client(url, token_file, user, password_file, ca_file, config)
    try:
        rows = _rows(client, state)
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Jobs", title_justify="left")
    for col in ("id", "state", "type", "GPUs", "node", "restarts", "exit", "reason"):
        table.add_column(col)
    for j in rows:
        table.add_row(j["id"], j["state"], j.get("task_type") or "", f"{j['gpus']:g}", j.get("node") or "-",
                      str(j.get("restarts", 0)), "" if j.get("exit_code") is None else str(j["exit_code"]),
                      j.get("reason") or "")
    console = Console(width=max(Console().width, 120))
    console.print(table if rows else "No jobs.")


@jobs_app.command("show")
def show(
    job_id: str = typer.Argument(..., help="The job's id (from submit or list)."),
    url: str | None = Url, token_file: Path | None = TokenFile, user: str | None = User,
    password_file: Path | None = PasswordFile, ca_file: Path | None = CaFile, config: Path | None = Config,
) -> None:
    """Show one job as JSON (state, placement, exit code, reason, restarts).

    Example: gpufleet jobs show j1-train --user admin --password-file pw.txt
    """
    client = _client(url, token_file, user, password_file, ca_file, config)
    try:
        typer.echo(json.dumps(client.request("GET", f"/jobs/{_quote(job_id)}"), indent=2))
    finally:
        client.close()


@jobs_app.command("cancel")
def cancel(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str | None = Url, token_file: Path | None = TokenFile, user: str | None = User,
    password_file: Path | None = PasswordFile, ca_file: Path | None = CaFile, config: Path | None = Config,
) -> None:
    """Cancel a queued or running job (a running one gets SIGTERM and the grace period, then SIGKILL).

    Example: gpufleet jobs cancel j1-train --user admin --password-file pw.txt
    """
    client = _client(url, token_file, user, password_file, ca_file, config)
    try:
        job = client.request("POST", f"/jobs/{_quote(job_id)}/cancel")
    finally:
        client.close()
    typer.echo(f"{job['id']}  {job['state']}")


@jobs_app.command("logs")
def logs(
    job_id: str = typer.Argument(..., help="The job's id."),
    follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing until the job ends."),
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between polls with --follow."),
    url: str | None = Url, token_file: Path | None = TokenFile, user: str | None = User,
    password_file: Path | None = PasswordFile, ca_file: Path | None = CaFile, config: Path | None = Config,
) -> None:
    """Print a job's stdout and stderr (every attempt); --follow polls until the job has ended.

    Example: gpufleet jobs logs j1-train --follow --user admin --password-file pw.txt
    """
    client = _client(url, token_file, user, password_file, ca_file, config)
    path = f"/jobs/{_quote(job_id)}"
    offset = 0
    try:
        while True:
            ended = follow and client.request("GET", path)["state"] in FINAL_STATES  # read before the log
            while True:  # everything there is now
                page = client.request("GET", f"{path}/logs", params={"offset": offset})
                if page["text"]:
                    typer.echo(page["text"], nl=False)
                if page["next_offset"] == offset:
                    break
                offset = page["next_offset"]
            if not follow or ended:
                return
            time.sleep(interval)
    finally:
        client.close()


def _quote(job_id: str) -> str:
    from urllib.parse import quote

    return quote(job_id, safe="")


def register(app: Any) -> None:
    app.add_typer(jobs_app, name="jobs")
