"""The "DR posture" page: a FastAPI app the Airflow api-server serves behind its authentication.

Routes (under the plugin's ``url_prefix``, see :mod:`securedr.posture_plugin`):

* ``/``                  the posture page (HTML, from ``templates/posture.html.j2``);
* ``/api/posture``       the same facts as JSON;
* ``/reports/drill``     the newest drill's stored HTML report;
* ``/reports/nightly``   the newest nightly run report, rendered from its JSON record.

Access: every route resolves the caller through Airflow's own ``get_user`` (the session cookie
the UI sets, or a bearer token): no credential -> 401, an invalid one -> 403, before anything is
read. Then the caller must be allowed to act on ``dr_restore`` (edit, i.e. the DR roles: with
FabAuthManager ``dr_restore``'s ``access_control`` grants it to DR Initiator and DR Approver;
a plain Viewer is refused with 403). No AWS call happens at import time; readings are cached
for ``SECUREDR_POSTURE_CACHE_SECONDS`` (default 60) so a busy page does not hammer S3.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

#: The DAG whose edit permission opens the posture page (the DR roles hold it).
ACCESS_DAG_ID = "dr_restore"
CACHE_ENV = "SECUREDR_POSTURE_CACHE_SECONDS"
DEFAULT_CACHE_SECONDS = 60.0


_BEARER = HTTPBearer(auto_error=False)


async def require_dr_access(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Any:
    """401/403 unless the caller is authenticated and holds a DR role (see module docstring).

    The caller is resolved by Airflow's own ``get_user`` (imported here, not at module level,
    so loading the plugin in the scheduler or a worker does not pull in the api-server).
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, None, bearer)
    allowed = await run_in_threadpool(
        get_auth_manager().is_authorized_dag,
        method="PUT",
        user=user,
        details=DagDetails(id=ACCESS_DAG_ID),
    )
    if not allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "The DR posture is shown to users with a DR role (edit access to dr_restore).",
        )
    return user


class PostureSource:
    """Reads the posture from AWS (through the plan and the ``aws_default`` connection) and
    keeps each reading for ``ttl`` seconds. Thread safe: one read at a time refreshes it."""

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = float(os.environ.get(CACHE_ENV, DEFAULT_CACHE_SECONDS)) if ttl is None else ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _context(self) -> Any:
        from securedr.operators.base import SecureDrMixin

        reader = SecureDrMixin()
        reader.plan_path = os.environ.get("SECUREDR_PLAN")
        reader.aws_conn_id = "aws_default"
        return reader

    def read(self) -> dict[str, Any]:
        from securedr.aws.posture import read_posture

        reader = self._context()
        return read_posture(reader.plan, reader.clients, reader.trusted_public_keys()).to_dict()

    def posture(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self.read())
            return self._cached[1]

    def drill_html(self) -> bytes | None:
        from securedr.aws.posture import evidence_reader

        reader = self._context()
        evidence = evidence_reader(reader.plan, reader.clients)
        keys = [k for k in evidence.list("drills", reader.plan.name) if k.endswith(".html")]
        return evidence.get(keys[-1]) if keys else None

    def nightly_report(self) -> dict[str, Any] | None:
        from securedr.aws.posture import evidence_reader, newest_nightly_report

        reader = self._context()
        evidence = evidence_reader(reader.plan, reader.clients)
        key = newest_nightly_report(evidence, reader.plan.name)
        return json.loads(evidence.get(key)) if key else None


LINKS = {
    "Newest drill report": "reports/drill",
    "Newest nightly run report": "reports/nightly",
    "Posture as JSON": "api/posture",
}


def create_app(source: PostureSource | None = None) -> FastAPI:
    """The posture app; ``source`` (tests) replaces the AWS reader."""
    app = FastAPI(
        title="SecureDR DR posture",
        dependencies=[Depends(require_dr_access)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.source = source or PostureSource()

    def source_of(request: Request) -> PostureSource:
        return request.app.state.source  # type: ignore[no-any-return]

    def guarded(call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except Exception as exc:  # the page says what failed instead of a bare 500
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"{what} could not be read: {str(exc)[:300]}"
            ) from None

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        from securedr.rendering import render_posture_html

        reading = guarded(source_of(request).posture, "the DR posture")
        return HTMLResponse(render_posture_html(reading, links=LINKS))

    @app.get("/api/posture")
    def posture_json(request: Request) -> JSONResponse:
        return JSONResponse(guarded(source_of(request).posture, "the DR posture"))

    @app.get("/reports/drill", response_class=HTMLResponse)
    def drill_report(request: Request) -> HTMLResponse:
        body = guarded(source_of(request).drill_html, "the drill report")
        if body is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No drill report is stored yet.")
        return HTMLResponse(body)

    @app.get("/reports/nightly", response_class=HTMLResponse)
    def nightly_report(request: Request) -> HTMLResponse:
        from securedr.rendering import render_nightly_html

        report = guarded(source_of(request).nightly_report, "the nightly run report")
        if report is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No nightly run report is stored yet.")
        return HTMLResponse(render_nightly_html(report))

    return app
