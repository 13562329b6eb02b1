"""The permission matrix: which role may call which route. Every route must appear here; a test walks
every route with every role and checks the matrix, so a new route without a rule fails the suite.

``own`` means a developer may act only on their own objects (checked in the route).
"""

from __future__ import annotations

ADMIN, DEVELOPER, AUDITOR = "admin", "developer", "auditor"
ALL = frozenset({ADMIN, DEVELOPER, AUDITOR})
READERS = ALL
ADMIN_ONLY = frozenset({ADMIN})
ADMIN_AUDITOR = frozenset({ADMIN, AUDITOR})
SUBMITTERS = frozenset({ADMIN, DEVELOPER})
PUBLIC: frozenset[str] = frozenset()  # no token needed

# (method, path template) -> roles allowed
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/refresh"): PUBLIC,
    ("POST", "/auth/logout"): ALL,
    ("POST", "/auth/password"): ALL,
    ("GET", "/auth/me"): ALL,
    ("GET", "/users"): ADMIN_AUDITOR,
    ("POST", "/users"): ADMIN_ONLY,
    ("GET", "/users/{user_id}"): ADMIN_AUDITOR,
    ("PATCH", "/users/{user_id}"): ADMIN_ONLY,
    ("DELETE", "/users/{user_id}"): ADMIN_ONLY,
    ("GET", "/gpus"): READERS,
    ("GET", "/gpus/{uuid}"): READERS,
    ("POST", "/gpus/{uuid}/cordon"): ADMIN_ONLY,
    ("POST", "/gpus/{uuid}/drain"): ADMIN_ONLY,
    ("POST", "/gpus/{uuid}/uncordon"): ADMIN_ONLY,
    ("GET", "/jobs"): READERS,
    ("POST", "/jobs"): SUBMITTERS,
    ("GET", "/jobs/{job_id}"): READERS,
    ("GET", "/jobs/{job_id}/logs"): READERS,  # developers: own jobs only
    ("POST", "/jobs/{job_id}/cancel"): SUBMITTERS,  # developers: own jobs only
    ("GET", "/allocations"): READERS,
    ("GET", "/predictions/failure"): READERS,
    ("GET", "/forecasts/demand"): READERS,
    ("GET", "/capacity/plan"): READERS,
    ("GET", "/alerts"): READERS,
    ("GET", "/silences"): READERS,
    ("POST", "/silences"): ADMIN_ONLY,
    ("DELETE", "/silences/{silence_id}"): ADMIN_ONLY,
    ("GET", "/settings"): ADMIN_AUDITOR,
    ("GET", "/audit"): ADMIN_AUDITOR,
    ("GET", "/audit/export"): ADMIN_AUDITOR,
    ("GET", "/audit/verify"): ADMIN_AUDITOR,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}
