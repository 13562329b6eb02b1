"""The console's pages. Each reads and changes through the API's routes as the signed-in user; a control
is shown only when the API's matrix lets the user's role call the route behind it, and the API refuses
the call anyway when it does not."""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import time
from typing import Annotated, Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gpufleet.allocator.records import FINAL, STATES
from gpufleet.console import fleet as fleet_view
from gpufleet.console.client import ApiCallError, problem_detail
from gpufleet.console.session import COOKIE, LOGIN_CSRF_COOKIE, pack, same_token
from gpufleet.console.view import PREFIX, NotSignedIn, View, set_cookie, take_flashes, templates, view

router = APIRouter(prefix=PREFIX)
V = Annotated[View, Depends(view)]


def _back(path: str, **query: Any) -> RedirectResponse:
    q = {k: v for k, v in query.items() if v not in (None, "")}
    return RedirectResponse(PREFIX + path + (f"?{urlencode(q)}" if q else ""), status_code=303)


def _safe_next(nxt: str | None) -> str:
    if nxt and nxt.startswith(PREFIX + "/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return PREFIX + "/fleet"


# -- sign-in, sign-out, password ----------------------------------------------------------------------
@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse(PREFIX + "/fleet", status_code=303)


def _login_page(request: Request, error: str | None, nxt: str, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    resp = templates.TemplateResponse(request, "login.html", {"me": None, "csrf": token, "error": error, "next": nxt,
                                                              "prefix": PREFIX, "flashes": take_flashes(request)},
                                      status_code=status, headers={"Cache-Control": "no-store"})
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, path=PREFIX, httponly=True, secure=True, samesite="strict", max_age=3600)
    return resp


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, None, _safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nxt = _safe_next(str(form.get("next", "")))
    if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))):
        return _login_page(request, "The sign-in form expired: please try again.", nxt, status=403)
    console = request.app.state.console
    try:
        body, _expires = await console.client(request).login(str(form.get("username", "")),
                                                             str(form.get("password", "")))
    except ApiCallError as exc:
        return _login_page(request, exc.detail, nxt, status=exc.status)
    # the session is the API's token pair itself (see session.py): nothing is kept on the server
    set_cookie(request, COOKIE, pack(body["access_token"], body["refresh_token"]))
    set_cookie(request, LOGIN_CSRF_COOKIE, "")
    return RedirectResponse(nxt, status_code=303)


@router.post("/logout")
async def logout(v: V) -> Response:
    await v.check_csrf()
    with contextlib.suppress(ApiCallError, NotSignedIn):  # signed out either way
        await v.raw("POST", "/auth/logout", json={"refresh_token": v.session.refresh_token})
    set_cookie(v.request, COOKIE, "")  # the API ended the session: a copy of the cookie is refused too
    return RedirectResponse(PREFIX + "/login", status_code=303)


@router.get("/password", response_class=HTMLResponse)
async def password_form(v: V) -> Response:
    return v.render("password.html", title="Change password")


@router.post("/password")
async def password(v: V) -> Response:
    form = await v.check_csrf()
    if form.get("new_password") != form.get("repeat_password"):
        v.flash("The new passwords differ.", "error")
        return _back("/password")
    r = await v.console.client(v.request).call(
        "POST", "/auth/password", token=v.session.access_token,
        json={"current_password": form.get("current_password", ""), "new_password": form.get("new_password", "")})
    if r.status_code == 401 and "current password" in problem_detail(r):  # still signed in: say so on the form
        v.flash("The current password is wrong.", "error")
        return _back("/password")
    if r.status_code >= 400:
        raise NotSignedIn() if r.status_code == 401 else ApiCallError(r.status_code, problem_detail(r))
    set_cookie(v.request, COOKIE, "")  # the API revoked every token of this user
    v.flash("Password changed: sign in with the new one.")
    return RedirectResponse(PREFIX + "/login", status_code=303)


# -- fleet and GPUs ---------------------------------------------------------------------------------------
async def _all(v: View, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = await v.api("GET", path, params={**params, "limit": 10_000, "offset": len(items)})
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


@router.get("/fleet", response_class=HTMLResponse)
async def fleet(v: V, node: str = "", model: str = "", health: str = "", risk: float = 0.0) -> Response:
    gpus = await _all(v, "/gpus")
    f = fleet_view.Filters(node=node.strip(), model=model, health=health, risk=risk)
    return v.render("fleet.html", title="Fleet", **fleet_view.build(gpus, f))


@router.get("/gpus/{uuid}", response_class=HTMLResponse)
async def gpu(v: V, uuid: str) -> Response:
    g = await v.api("GET", f"/gpus/{uuid}")
    preds = [p for p in await _all(v, "/predictions/failure") if p["uuid"] == uuid]
    try:
        allocs = [a for a in (await _all(v, "/allocations")) if a["uuid"] == uuid]
    except ApiCallError as exc:
        if exc.status != 409:  # 409: no job queue in this service
            raise
        allocs = []
    charts = fleet_view.charts(v.request.app.state.console, uuid)
    return v.render("gpu.html", title=f"GPU {g['node']}/{g['index']}", g=fleet_view.decorate(g), preds=preds,
                    allocs=allocs, charts=charts)


@router.post("/gpus/{uuid}/{action}")
async def gpu_action(v: V, uuid: str, action: str) -> Response:
    form = await v.check_csrf()
    if action not in ("cordon", "drain", "uncordon"):
        raise ApiCallError(404, f"no GPU action {action!r}")
    v.require("POST", f"/gpus/{{uuid}}/{action}")
    await v.api("POST", f"/gpus/{uuid}/{action}", json={"reason": str(form.get("reason", ""))[:512]})
    v.flash(f"GPU {uuid}: {action} done.")
    return _back(f"/gpus/{uuid}")


# -- jobs ---------------------------------------------------------------------------------------------
@router.get("/jobs", response_class=HTMLResponse)
async def jobs(v: V, state: str = "", mine: str = "", q: str = "") -> Response:
    items = await _all(v, "/jobs", state=state or None)
    if mine:
        items = [j for j in items if j["user"] == v.session.username]
    if q:
        items = [j for j in items if q.lower() in j["name"].lower() or q in j["id"]]
    states = sorted({*STATES, *(j["state"] for j in items)})
    return v.render("jobs.html", title="Jobs", jobs=items[:500], total=len(items), state=state, mine=mine, q=q,
                    states=states)


def _opt_float(value: Any) -> float | None:
    text = str(value or "").strip()
    return float(text) if text else None


@router.post("/jobs")
async def submit_one(v: V) -> Response:
    form = await v.check_csrf()
    v.require("POST", "/jobs")
    try:
        job: dict[str, Any] = {"name": str(form.get("name", "")).strip(), "gpus": _opt_float(form.get("gpus")) or 1}
        command = shlex.split(str(form.get("command", "")))
        duration = _opt_float(form.get("duration_s"))
    except ValueError as exc:
        raise ApiCallError(422, f"bad job form: {exc}") from None
    if command:
        job["command"] = command
    if duration:
        job["duration_s"] = duration
    if form.get("priority"):
        job["priority"] = str(form["priority"])
    deps = [d.strip() for d in str(form.get("depends_on", "")).split(",") if d.strip()]
    if deps:
        job["depends_on"] = deps
    created = await v.api("POST", "/jobs", json={"jobs": [job]})
    v.flash(f"Submitted {created[0]['name']} ({created[0]['id']}).")
    return _back(f"/jobs/{created[0]['id']}")


@router.post("/jobs/batch")
async def submit_batch(v: V) -> Response:
    form = await v.check_csrf()
    v.require("POST", "/jobs")
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiCallError(422, "choose a YAML or JSON file with the batch ({jobs: [...]} or a list of jobs)")
    raw = await upload.read()
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if (upload.filename or "").endswith(".json") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ApiCallError(422, f"{upload.filename}: not valid YAML / JSON: {str(exc).splitlines()[0]}") from None
    if isinstance(data, list):
        data = {"jobs": data}
    if not isinstance(data, dict):
        raise ApiCallError(422, f"{upload.filename}: expected a mapping with 'jobs' or a list of jobs")
    created = await v.api("POST", "/jobs", json=data)
    v.flash(f"Submitted {len(created)} jobs: " + ", ".join(f"{j['name']} ({j['id']})" for j in created))
    return _back("/jobs", mine="1")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(v: V, job_id: str) -> Response:
    j = await v.api("GET", f"/jobs/{job_id}")
    logs = await v.api("GET", f"/jobs/{job_id}/logs")
    transitions: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    if v.may("GET", "/audit"):  # every state change is in the audit log (admins, auditors)
        found = await v.api("GET", "/audit", params={"action": "job", "target": job_id, "limit": 200})
        rows = [r for r in found["items"] if r["target"] == job_id]
        # the scheduler's rows carry the job service's clock (the job's own times; simulated in the demo),
        # a user's request (cancel) the API's wall clock: listed apart, so no timeline mixes the two
        transitions = [r for r in rows if r.get("source") == "scheduler"]
        requests = [r for r in rows if r.get("source") != "scheduler"]
    return v.render("job.html", transitions=transitions, requests=requests, title=f"Job {j['name']}", j=j, logs=logs,
                    deps=list(j["depends_on"]), final=FINAL)


@router.get("/jobs/{job_id}/follow")
async def job_follow(v: V, job_id: str, offset: int = 0) -> Response:
    """For the log follower (static/console.js): new log text from ``offset`` and the job's state."""
    logs = await v.api("GET", f"/jobs/{job_id}/logs", params={"offset": max(0, offset)})
    j = await v.api("GET", f"/jobs/{job_id}")
    return Response(json.dumps({"text": logs["text"], "next_offset": logs["next_offset"], "state": j["state"]}),
                    media_type="application/json", headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel")
async def job_cancel(v: V, job_id: str) -> Response:
    await v.check_csrf()
    v.require("POST", "/jobs/{job_id}/cancel")
    await v.api("POST", f"/jobs/{job_id}/cancel")
    v.flash(f"Cancelled job {job_id}.")
    return _back(f"/jobs/{job_id}")


# -- alerts and silences ----------------------------------------------------------------------------------
@router.get("/alerts", response_class=HTMLResponse)
async def alerts(v: V) -> Response:
    items = await v.api("GET", "/alerts")
    silences = await v.api("GET", "/silences")
    for a in items:
        a["silenced_by"] = fleet_view.silenced_by(a, silences)
    return v.render("alerts.html", title="Alerts", alerts=items, silences=silences, now=time.time())


def _matchers(text: str) -> list[dict[str, str]]:
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        for op in ("=~", "!~", "!=", "="):
            if op in part:
                name, value = part.split(op, 1)
                out.append({"name": name.strip(), "op": op, "value": value.strip().strip('"')})
                break
        else:
            raise ApiCallError(422, f"matcher {part!r}: write name=value, name!=value, name=~regex or name!~regex")
    return out


@router.post("/silences")
async def silence_create(v: V) -> Response:
    form = await v.check_csrf()
    v.require("POST", "/silences")
    try:
        hours = float(str(form.get("hours", "2")))
    except ValueError:
        raise ApiCallError(422, "duration: a number of hours") from None
    s = await v.api("POST", "/silences", json={"matchers": _matchers(str(form.get("matchers", ""))),
                                               "duration_s": hours * 3600, "comment": str(form.get("comment", ""))})
    v.flash(f"Silence {s['id']} created.")
    return _back("/alerts")


@router.post("/silences/{silence_id}/expire")
async def silence_expire(v: V, silence_id: str) -> Response:
    await v.check_csrf()
    v.require("DELETE", "/silences/{silence_id}")
    await v.api("DELETE", f"/silences/{silence_id}")
    v.flash(f"Silence {silence_id} expired.")
    return _back("/alerts")


@router.post("/silences/{silence_id}/extend")
async def silence_extend(v: V, silence_id: str) -> Response:
    """A new silence with the same matchers ending ``hours`` later than the old one; the old one expires."""
    form = await v.check_csrf()
    v.require("POST", "/silences")
    v.require("DELETE", "/silences/{silence_id}")
    old = next((s for s in await v.api("GET", "/silences") if s["id"] == silence_id), None)
    if old is None:
        raise ApiCallError(404, f"no active silence {silence_id!r}")
    hours = float(str(form.get("hours", "2")) or 2)
    duration = max(60.0, old["ends_at"] - time.time() + hours * 3600)
    s = await v.api("POST", "/silences", json={"matchers": old["matchers"], "duration_s": duration,
                                               "comment": old["comment"]})
    await v.api("DELETE", f"/silences/{silence_id}")
    v.flash(f"Silence extended as {s['id']}.")
    return _back("/alerts")


# -- capacity ------------------------------------------------------------------------------------------------
@router.get("/capacity", response_class=HTMLResponse)
async def capacity(v: V) -> Response:
    plan = await v.api("GET", "/capacity/plan")
    forecasts = await v.api("GET", "/forecasts/demand")
    return v.render("capacity.html", title="Capacity", plan=plan, plots=fleet_view.forecast_plots(forecasts))


# -- audit ----------------------------------------------------------------------------------------------------
AUDIT_PAGE = 50


def _audit_params(since: str, until: str, user: str, action: str, target: str) -> dict[str, Any]:
    return {"since": fleet_view.parse_time(since), "until": fleet_view.parse_time(until), "user": user or None,
            "action": action or None, "target": target or None}


@router.get("/audit", response_class=HTMLResponse)
async def audit(v: V, since: str = "", until: str = "", user: str = "", action: str = "", target: str = "",
                page: int = 0) -> Response:
    v.require("GET", "/audit")
    try:
        params = _audit_params(since, until, user, action, target)
    except ValueError as exc:
        raise ApiCallError(422, str(exc)) from None
    page = max(0, page)
    result = await v.api("GET", "/audit", params={**params, "limit": AUDIT_PAGE, "offset": page * AUDIT_PAGE})
    verify = await v.api("GET", "/audit/verify") if v.may("GET", "/audit/verify") else None
    query = {"since": since, "until": until, "user": user, "action": action, "target": target}
    return v.render("audit.html", title="Audit", rows=result["items"], total=result["total"], page=page,
                    pages=max(1, -(-result["total"] // AUDIT_PAGE)), query=query, verify=verify,
                    qs=urlencode({k: x for k, x in query.items() if x}))


@router.get("/audit.csv")
async def audit_csv(v: V, since: str = "", until: str = "", user: str = "", action: str = "",
                    target: str = "") -> Response:
    v.require("GET", "/audit/export")
    try:
        params = _audit_params(since, until, user, action, target)
    except ValueError as exc:
        raise ApiCallError(422, str(exc)) from None
    r = await v.raw("GET", "/audit/export", params=params)
    return Response(r.content, media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="gpufleet-audit.csv"',
                             "Cache-Control": "no-store"})


# -- users ------------------------------------------------------------------------------------------------------
@router.get("/users", response_class=HTMLResponse)
async def users(v: V) -> Response:
    v.require("GET", "/users")
    items: list[dict[str, Any]] = []
    while True:
        page = await v.api("GET", "/users", params={"limit": 500, "offset": len(items)})
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            break
    return v.render("users.html", title="Users", users=items)


@router.post("/users")
async def user_create(v: V) -> Response:
    form = await v.check_csrf()
    v.require("POST", "/users")
    u = await v.api("POST", "/users", json={"username": str(form.get("username", "")).strip(),
                                            "password": str(form.get("password", "")),
                                            "role": str(form.get("role", "")),
                                            "team": str(form.get("team", "")).strip() or None})
    v.flash(f"User {u['username']} created ({u['role']}).")
    return _back("/users")


@router.post("/users/{user_id}")
async def user_update(v: V, user_id: int) -> Response:
    form = await v.check_csrf()
    v.require("PATCH", "/users/{user_id}")
    body: dict[str, Any] = {}
    if form.get("role"):
        body["role"] = str(form["role"])
    if form.get("disabled") in ("0", "1"):
        body["disabled"] = form["disabled"] == "1"
    if not body:
        raise ApiCallError(422, "nothing to change: pick a role or disable / enable")
    u = await v.api("PATCH", f"/users/{user_id}", json=body)
    v.flash(f"User {u['username']}: {u['role']}, {'disabled' if u['disabled'] else 'enabled'}.")
    return _back("/users")
