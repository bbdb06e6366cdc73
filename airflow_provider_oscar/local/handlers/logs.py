"""logs.go: a service's jobs (``/system/logs/:serviceName[/:jobName]``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_oscar.local.handlers.common import Context, empty, text
from airflow_provider_oscar.local.rules import may_use
from airflow_provider_oscar.local.state import Caller
from airflow_provider_oscar.local.types.service import Service


def register(app: FastAPI, ctx: Context) -> None:
    def authorized(name: str, caller: Caller) -> Service | Response:
        """logs.go getAuthorizedService: the service, or the answer to a refusal."""
        service = ctx.state.read_service(name)
        if service is None:
            return empty(404)
        if caller.admin or may_use(service, caller.subject, ctx.profile):
            return service
        if ctx.profile.owner_only_logs:
            return empty(200)  # nothing written: Gin answers 200
        return text(f"User {caller.subject} doesn't have permision to get this service", 403)

    @app.get("/system/logs/{name}")
    async def list_jobs(name: str, request: Request) -> Response:
        caller = ctx.system_caller(request)
        service = authorized(name, caller)
        if isinstance(service, Response):
            return service
        owner = None if caller.admin else caller.subject[:62]  # the job-owner label selector
        page = ctx.state.job_page(name, owner, request.query_params.get("page"))
        return ctx.json(page)

    @app.delete("/system/logs/{name}")
    async def delete_jobs(name: str, request: Request) -> Response:
        service = authorized(name, ctx.system_caller(request))
        if isinstance(service, Response):
            return service
        everything = request.query_params.get("all", "").lower() in ("true", "1", "t")
        for job in ctx.state.remove_jobs(name, everything=everything):
            ctx.cluster.cancel(job)
        return empty(204)

    @app.get("/system/logs/{name}/{job_name}")
    async def job_logs(name: str, job_name: str, request: Request) -> Response:
        service = authorized(name, ctx.system_caller(request))
        if isinstance(service, Response):
            return service
        job = ctx.state.get_job(name, job_name)
        if job is None or not job.has_pod:
            return empty(500)  # no pod: c.String(500, err.Error()) on a nil error panics
        if job.started is None:
            return empty(404)  # the container has not started: GetLogs is not 200
        body = job.logs
        if request.query_params.get("timestamps", "").lower() in ("true", "1", "t"):
            stamp = job.started.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
            body = "".join(f"{stamp} {line}" for line in body.splitlines(keepends=True))
        return text(body, 200)

    @app.delete("/system/logs/{name}/{job_name}")
    async def delete_job(name: str, job_name: str, request: Request) -> Response:
        caller = ctx.system_caller(request)
        service = authorized(name, caller)
        if isinstance(service, Response):
            if ctx.profile.owner_only_logs:
                return text("You do not have permission to access this service", 403)
            return service
        ctx.cluster.cancel(ctx.state.remove_job(name, job_name))
        return empty(204)
