"""The FastAPI app behind the "OSCAR" page, mounted by the API server at ``/oscar``.

Authentication: Airflow mounts plugin apps without its own dependencies, so this app declares
:func:`airflow.api_fastapi.core_api.security.get_user` for every route (``FastAPI(dependencies=
...)``). It accepts the JWT the UI keeps in the ``_token`` cookie (the page is shown in an iframe
of the same origin, so the cookie comes along) or an ``Authorization: Bearer`` header, as the
REST API does; anything else is refused with 401 (403 for an invalid token). Interactive docs
and ``openapi.json`` are off: FastAPI adds them outside the app's dependencies.

Authorisation: a cluster is shown to users who may read its connection, ensemble results to
users who may read the DAG's runs and XComs; both asked of the configured auth manager.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_oscar.errors import OscarError
from airflow_provider_oscar.hooks import names
from airflow_provider_oscar.pictures import Thumbnail
from airflow_provider_oscar.plugins import clusters, results, runs

if TYPE_CHECKING:
    from jinja2 import Environment

URL_PREFIX = "/oscar"
NONE = "\N{EN DASH}"  # what the page shows for a missing number
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # No script at all; framed only by the Airflow UI (same origin).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'self'",
}
# Route parameters: Airflow's own rules for its ids (connection ids without the slashes no
# route can carry; ``airflow.sdk`` KEY_REGEX and ID_LEN for DAG ids; run ids without control
# characters), OSCAR's for service and job names (:mod:`airflow_provider_oscar.hooks.names`).
_CONN_ID = re.compile(r"[\w#!()\-.:\\]{1,250}")
_DAG_ID = re.compile(r"[\w.-]{1,250}")
_RUN_ID = re.compile(r"[^\x00-\x1f\x7f/]{1,250}")


def _get_user() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def can_read_connection(user: Any, conn_id: str) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return bool(
        _auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
        )
    )


def can_read_results(user: Any, dag_id: str) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    manager = _auth_manager()
    return all(
        manager.is_authorized_dag(
            method="GET", access_entity=entity, details=DagDetails(id=dag_id), user=user
        )
        for entity in (DagAccessEntity.RUN, DagAccessEntity.XCOM)
    )


# templates ---------------------------------------------------------------------------------


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or isinstance(value, bool):
        return NONE
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NONE
    return f"{number * 100:.{digits}f} %" if math.isfinite(number) else NONE


def _width(value: Any) -> str:
    """A CSS width for a share in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "0%"
    if not math.isfinite(number):
        return "0%"
    return f"{max(0.0, min(1.0, number)) * 100:.2f}%"


def _num(value: Any, digits: int = 2) -> str:
    if value is None or isinstance(value, bool):
        return NONE
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number.is_integer():
        return f"{int(number)}"
    return f"{number:.{digits}f}"


def _bytes(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NONE
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(number) < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return NONE  # pragma: no cover


def _when(value: Any) -> str:
    if not value:
        return NONE
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.utcoffset() is not None else "")


def _seconds(value: Any) -> str:
    if value is None:
        return NONE
    number = float(value)
    if number < 60:
        return f"{number:.1f} s"
    minutes, seconds = divmod(int(number), 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@cache
def templates() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("airflow_provider_oscar.plugins", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct, width=_width, num=_num, bytes=_bytes, when=_when, seconds=_seconds, q=_quote
    )
    return env


def _quote(value: Any) -> str:
    return quote(str(value), safe="")


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    base = str(request.scope.get("root_path") or URL_PREFIX).rstrip("/")
    airflow_base = base[: -len(URL_PREFIX)] if base.endswith(URL_PREFIX) else ""
    html = (
        templates().get_template(template).render(base=base, airflow_base=airflow_base, **context)
    )
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


# data --------------------------------------------------------------------------------------


def _readable_connections(user: Any) -> list[clusters.ConnectionRef]:
    return [ref for ref in clusters.oscar_connections() if can_read_connection(user, ref.conn_id)]


# Auth-manager calls may query the metadata DB (FAB): they run in the thread pool, as the rest.


async def _clusters(user: Any, *, with_services: bool = True) -> list[dict[str, Any]]:
    refs = await run_in_threadpool(_readable_connections, user)
    return list(
        await asyncio.gather(
            *(
                run_in_threadpool(clusters.collect_cluster, ref, with_services=with_services)
                for ref in refs
            )
        )
    )


async def _ensemble_runs(user: Any) -> list[dict[str, Any]]:
    return await run_in_threadpool(
        runs.list_ensemble_runs, lambda dag_id: can_read_results(user, dag_id)
    )


def _check_id(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 80 else f"{value[:80]}..."
        raise HTTPException(400, f"invalid {what} {shown!r}")


def _check_name(check: Callable[[str], str], value: str) -> None:
    try:
        check(value)
    except names.InvalidName as exc:
        raise HTTPException(400, str(exc)) from None


async def _run(user: Any, dag_id: str, run_id: str, show: str) -> dict[str, Any]:
    _check_id(_DAG_ID, dag_id, "DAG id")
    _check_id(_RUN_ID, run_id, "run id")
    if not await run_in_threadpool(can_read_results, user, dag_id):
        raise HTTPException(403, f"You may not read the runs of {dag_id!r}")
    run = await run_in_threadpool(runs.run_reports, dag_id, run_id)
    if run is None:
        raise HTTPException(404, f"DAG {dag_id!r} has no run {run_id!r}")
    for task in run["tasks"]:
        report = task.pop("report")
        task["view"] = results.report_view(report, show=show) if report else None
    return run


async def _picture(
    user: Any, dag_id: str, run_id: str, task_id: str, map_index: int, name: str
) -> Thumbnail:
    """The thumbnail of an input's picture, if the user may read the run and its storage."""
    _check_id(_DAG_ID, dag_id, "DAG id")
    _check_id(_RUN_ID, run_id, "run id")
    _check_id(_DAG_ID, task_id, "task id")
    if not await run_in_threadpool(can_read_results, user, dag_id):
        raise HTTPException(403, f"You may not read the runs of {dag_id!r}")
    run = await run_in_threadpool(runs.run_reports, dag_id, run_id)
    task = next(
        (
            t
            for t in (run or {}).get("tasks") or []
            if (t["task_id"], t["map_index"]) == (task_id, map_index)
        ),
        None,
    )
    source = results.picture_source(task.get("report") or {}, name) if task else None
    if source is None:
        raise HTTPException(404, f"No picture of input {name!r} in that report")
    conn_id, path = source
    if not await run_in_threadpool(can_read_connection, user, conn_id):
        raise HTTPException(403, f"You may not read the connection {conn_id!r}")
    try:
        found = await run_in_threadpool(results.read_thumbnail, conn_id, path)
    except OscarError as exc:
        raise HTTPException(502, f"Reading {path}: {exc}") from None
    if found is None:
        raise HTTPException(404, f"No thumbnail of {path}: missing, too large or not a picture")
    return found


async def _logs(user: Any, conn_id: str, service: str, job: str) -> str:
    """The job's logs; the parameters are checked before anything is asked of anyone."""
    _check_id(_CONN_ID, conn_id, "connection id")
    _check_name(names.service, service)
    _check_name(names.job, job)
    if not await run_in_threadpool(can_read_connection, user, conn_id):
        raise HTTPException(403, f"You may not read the connection {conn_id!r}")
    refs = await run_in_threadpool(clusters.oscar_connections)
    if conn_id not in {ref.conn_id for ref in refs}:
        raise HTTPException(404, f"No OSCAR connection {conn_id!r}")
    return await run_in_threadpool(clusters.job_logs, conn_id, service, job)


# the app -----------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The app; every route requires an authenticated Airflow user."""
    get_user = _get_user()
    app = FastAPI(
        title="OSCAR",
        description="Clusters, services, jobs and ensemble results of the OSCAR provider.",
        dependencies=[Depends(get_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    User = Depends(get_user)  # one resolution per request

    @app.exception_handler(StarletteHTTPException)
    async def _refused(request: Request, exc: StarletteHTTPException) -> Response:
        root = str(request.scope.get("root_path") or "")
        path = request.url.path.removeprefix(root) if root else request.url.path
        wants_html = "text/html" in request.headers.get("accept", "")
        if wants_html and not path.startswith("/api/"):
            return _page(
                request,
                "error.html",
                exc.status_code,
                tab=None,
                status=exc.status_code,
                detail=str(exc.detail),
            )
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.get("/", response_class=HTMLResponse, summary="Clusters, services and jobs")
    async def clusters_page(request: Request, user: Any = User) -> HTMLResponse:
        return _page(request, "clusters.html", tab="clusters", clusters=await _clusters(user))

    @app.get("/results", response_class=HTMLResponse, summary="Ensemble runs")
    async def results_page(request: Request, user: Any = User) -> HTMLResponse:
        return _page(request, "results.html", tab="results", dags=await _ensemble_runs(user))

    @app.get("/results/{dag_id}/{run_id}", response_class=HTMLResponse, summary="One run")
    async def run_page(
        request: Request,
        dag_id: str,
        run_id: str,
        show: str = Query("all", pattern="^(all|disagreements|abstained|wrong)$"),
        user: Any = User,
    ) -> HTMLResponse:
        run = await _run(user, dag_id, run_id, show)
        return _page(request, "run.html", tab="results", run=run, show=show)

    @app.get("/results/{dag_id}/{run_id}/picture", summary="An input's picture, bounded")
    async def picture(
        dag_id: str,
        run_id: str,
        task_id: str = Query(...),
        map_index: int = Query(-1),
        input: str = Query(..., max_length=2048),
        user: Any = User,
    ) -> Response:
        found = await _picture(user, dag_id, run_id, task_id, map_index, input)
        headers = {**_SECURITY_HEADERS, "Cache-Control": "private, max-age=600"}
        return Response(found.data, media_type=found.content_type, headers=headers)

    @app.get("/logs/{conn_id}/{service}/{job}", response_class=HTMLResponse, summary="Job logs")
    async def logs_page(
        request: Request, conn_id: str, service: str, job: str, user: Any = User
    ) -> HTMLResponse:
        text = await _logs(user, conn_id, service, job)
        return _page(
            request,
            "logs.html",
            tab="clusters",
            conn_id=conn_id,
            service=service,
            job=job,
            text=text,
        )

    @app.get("/api/clusters", summary="Clusters with their services and recent jobs")
    async def clusters_api(user: Any = User) -> JSONResponse:
        return _json({"clusters": await _clusters(user)})

    @app.get("/api/results", summary="DAGs that ran the ensemble operator, with recent runs")
    async def results_api(user: Any = User) -> JSONResponse:
        return _json({"dags": await _ensemble_runs(user)})

    @app.get("/api/results/{dag_id}/{run_id}", summary="A run's ensemble reports, shaped")
    async def run_api(
        dag_id: str,
        run_id: str,
        show: str = Query("all", pattern="^(all|disagreements|abstained|wrong)$"),
        user: Any = User,
    ) -> JSONResponse:
        return _json(await _run(user, dag_id, run_id, show))

    @app.get("/api/logs/{conn_id}/{service}/{job}", summary="A job's logs as text")
    async def logs_api(conn_id: str, service: str, job: str, user: Any = User) -> Response:
        text = await _logs(user, conn_id, service, job)
        return PlainTextResponse(text, headers={"Cache-Control": "no-store"})

    return app


@cache
def fastapi_app() -> FastAPI:
    """The one app instance the plugin registers."""
    return create_app()
