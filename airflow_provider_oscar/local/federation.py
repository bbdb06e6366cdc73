"""Federation (v4.1.0): grycap/oscar ``pkg/utils/federation.go`` (replicas of a service on the
member clusters, made and removed over their REST API with the caller's credentials) and
``pkg/resourcemanager/delegate.go`` (a job the cluster cannot schedule goes to a member).

Every call to another cluster is a real HTTP request, so two embedded OSCARs federate as two
clusters do. Blocking: call from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from dataclasses import replace
from typing import Any

import httpx

from airflow_provider_oscar.local.profiles import Release
from airflow_provider_oscar.local.rules import ORIGIN_CLUSTER, ORIGIN_SERVICE, WORKER
from airflow_provider_oscar.local.types.cluster import Cluster
from airflow_provider_oscar.local.types.federation import Federation
from airflow_provider_oscar.local.types.gojson import encode, go_json_text
from airflow_provider_oscar.local.types.replica import Replica
from airflow_provider_oscar.local.types.service import Service

NO_DELEGATE = 101  # resourcemanager noDelegateCode
TIMEOUT = 20.0


class GoPanic(Exception):
    """A nil dereference or failed type assertion in the delegation code."""


def members(service: Service) -> list[Replica]:
    return list(service.federation.members or []) if service.federation else []


def apply_federation(service: Service) -> None:
    """``ApplyFederation``/``defaultGroupID``: the group is the service's name by default."""
    if service.federation is not None and not service.federation.group_id.strip():
        service.federation.group_id = service.name


def _auth(headers: dict[str, str], auth_header: str, cluster: Cluster) -> None:
    if auth_header.startswith(("Bearer ", "Basic ")):
        headers["Authorization"] = auth_header
    elif cluster.auth_user or cluster.auth_password:
        basic = base64.b64encode(f"{cluster.auth_user}:{cluster.auth_password}".encode())
        headers["Authorization"] = f"Basic {basic.decode()}"


def _url(cluster: Cluster, *parts: str) -> str:
    return cluster.endpoint.strip().rstrip("/") + "/" + "/".join(p.strip("/") for p in parts)


def _client(cluster: Cluster) -> httpx.Client:
    return httpx.Client(verify=cluster.ssl_verify, timeout=TIMEOUT)


def verify_auth(service: Service, auth_header: str) -> list[str]:
    """``VerifyFederationAuth``: each ``oscar`` member's cluster accepts the caller."""
    errors = []
    for member in members(service):
        if member.type.lower() != "oscar":
            continue
        cluster = (service.clusters or {}).get(member.cluster_id)
        if cluster is None:
            errors.append(f'cluster "{member.cluster_id}" not defined')
            continue
        if not cluster.endpoint.strip():
            errors.append("empty cluster endpoint")
            continue
        headers: dict[str, str] = {}
        _auth(headers, auth_header, cluster)
        try:
            with _client(cluster) as client:
                response = client.get(
                    _url(cluster, "system/services", member.service_name), headers=headers
                )
        except httpx.HTTPError as exc:
            errors.append(f'auth check failed for cluster "{cluster.endpoint}": {exc}')
            continue
        if response.status_code in (401, 403):
            errors.append(
                f'auth rejected by cluster "{cluster.endpoint}" (status {response.status_code})'
            )
        elif response.status_code >= 500:
            errors.append(
                f'auth check failed for cluster "{cluster.endpoint}" (status '
                f"{response.status_code})"
            )
    return errors


def worker_of(service: Service, member: Replica, refresh_token: str) -> Service:
    """``buildWorkerService``: the replica a member cluster gets."""
    assert service.federation is not None
    worker = replace(service)
    worker.name = member.service_name
    worker.cluster_id = member.cluster_id
    topology = service.federation.topology
    worker.federation = Federation(
        service.federation.group_id,
        topology,
        service.federation.delegation,
        service.federation.rescheduler_threshold,
        _mesh(service, member) if topology.lower() == "mesh" else None,
    )
    worker.clusters = {
        key: replace(value, auth_user="", auth_password="")
        for key, value in (service.clusters or {}).items()
    } or None
    if service.cluster_id:
        worker.annotations = {
            **(service.annotations or {}),
            ORIGIN_CLUSTER: service.cluster_id,
            ORIGIN_SERVICE: service.name,
            WORKER: "true",
        }
    if refresh_token and topology.lower() == "mesh":
        secrets = dict(service.environment.secrets or {})
        secrets["refresh_token"] = refresh_token
        worker.environment = replace(service.environment, secrets=secrets)
    return worker


def _mesh(service: Service, member: Replica) -> list[Replica]:
    origin = Replica("oscar", service.cluster_id, service.name, priority=0)
    others = [
        m
        for m in members(service)
        if not (m.cluster_id == member.cluster_id and m.service_name == member.service_name)
    ]
    return [origin, *others]


def expand(
    service: Service, auth_header: str, method: str, refresh_token: str, release: Release
) -> list[str]:
    """``ExpandFederation``: POST (create) or PUT (update) each member's replica."""
    if not members(service):
        return []
    apply_federation(service)
    errors = []
    for member in members(service):
        worker = worker_of(service, member, refresh_token)
        cluster = (service.clusters or {}).get(member.cluster_id)
        if cluster is None:
            errors.append(f'cluster "{member.cluster_id}" not defined')
            continue
        if not cluster.endpoint.strip():
            errors.append("empty cluster endpoint")
            continue
        headers = {"Content-Type": "application/json"}
        _auth(headers, auth_header, cluster)
        body = go_json_text(encode(worker, release))
        try:
            with _client(cluster) as client:
                response = client.request(
                    method, _url(cluster, "system/services"), content=body, headers=headers
                )
        except httpx.HTTPError as exc:
            errors.append(f"request failed: {exc}")
            continue
        if response.status_code >= 400:
            text = response.text[:4096].strip()
            errors.append(
                f"cluster responded with status {response.status_code}"
                + (f": {text}" if text else "")
            )
    return errors


def rollback(service: Service, auth_header: str) -> list[str]:
    """``RollbackFederationCreate``: DELETE the replicas made so far (404 is fine)."""
    errors = []
    for member in members(service):
        if member.type.lower() != "oscar":
            continue
        cluster = (service.clusters or {}).get(member.cluster_id)
        if cluster is None:
            errors.append(f'cluster "{member.cluster_id}" not defined')
            continue
        headers: dict[str, str] = {}
        _auth(headers, auth_header, cluster)
        try:
            with _client(cluster) as client:
                url = _url(cluster, "system/services", member.service_name)
                response = client.delete(url, headers=headers)
        except httpx.HTTPError as exc:
            errors.append(f'rollback delete failed for cluster "{cluster.endpoint}": {exc}')
            continue
        if response.status_code >= 400 and response.status_code != 404:
            errors.append(
                f'rollback delete failed for cluster "{cluster.endpoint}" (status '
                f"{response.status_code})"
            )
    return errors


def go_errors(errors: list[str]) -> str:
    """Go's ``%v`` of a ``[]error``."""
    return "[" + " ".join(errors) + "]"


# delegation --------------------------------------------------------------------------------


def exchange_refresh_token(refresh_token: str) -> str:
    """delegate.go ``exchangeRefreshToken``: the token's issuer is a Keycloak-style server
    (``<iss>/protocol/openid-connect/token``), its ``azp`` the client and ``scope`` the
    scope; a token that is no JWT, or lacks those claims, panics."""
    parts = refresh_token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        issuer, client_id, scope = claims["iss"], claims["azp"], claims["scope"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GoPanic("invalid memory address or nil pointer dereference") from None
    body = f"grant_type=refresh_token&refresh_token={refresh_token}&client_id={client_id}"
    body += f"&scope={scope}"
    response = httpx.post(
        f"{issuer}/protocol/openid-connect/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=TIMEOUT,
    )
    try:
        return str(response.json().get("access_token") or "")
    except ValueError:
        return ""


def delegation_token(service: Service, refresh_token: str, auth_header: str) -> str:
    """``resolveDelegationToken``: an access token from the service's refresh token, else the
    caller's bearer token."""
    bearer = (
        auth_header.removeprefix("Bearer ").strip() if auth_header.startswith("Bearer ") else ""
    )
    if not refresh_token:
        return bearer
    return exchange_refresh_token(refresh_token) or bearer


def _priorities(service: Service, token: str, auth_header: str) -> list[Replica]:
    """``getClusterStatus``: a member that cannot run the service (no node with its CPU and
    memory free of requests) or whose status cannot be read gets ``noDelegateCode``, unless
    the delegation is ``static``; ``random`` and ``load-based`` set priorities."""
    how = (service.federation.delegation if service.federation else "").strip().lower()
    replicas = [replace(m) for m in members(service)]
    for replica in replicas:
        if replica.type.lower() != "oscar":
            continue
        cluster = (service.clusters or {}).get(replica.cluster_id)
        status = _status(cluster, token, auth_header) if cluster else None
        fits = status is not None and _fits(service, status)
        if how == "static":
            continue
        if not fits:
            replica.priority = NO_DELEGATE
        elif how == "random":
            replica.priority = random.randrange(NO_DELEGATE)
        elif how == "load-based":
            replica.priority = _load_priority(status or {})
        else:
            replica.priority = NO_DELEGATE
    return sorted(replicas, key=lambda r: r.priority)


def _status(cluster: Cluster, token: str, auth_header: str) -> dict[str, Any] | None:
    headers: dict[str, str] = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    else:
        _auth(headers, auth_header if auth_header.startswith("Bearer ") else "", cluster)
    try:
        with _client(cluster) as client:
            response = client.get(_url(cluster, "system/status"), headers=headers)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _fits(service: Service, status: dict[str, Any]) -> bool:
    from airflow_provider_oscar.local.types.quantity import bytes_of

    try:
        cpu = float(service.cpu) * 1000
    except ValueError:
        return False
    memory = bytes_of(service.memory)
    for node in (status.get("cluster") or {}).get("nodes") or []:
        free_cpu = node["cpu"]["capacity_cores"] - node["cpu"].get("request_cores", 0)
        free_memory = node["memory"]["capacity_bytes"] - node["memory"].get("request_bytes", 0)
        if free_cpu - cpu >= 0 and free_memory - memory >= 0:
            return True
    return False


def _load_priority(status: dict[str, Any]) -> int:
    nodes = (status.get("cluster") or {}).get("nodes") or []
    metrics = (status.get("cluster") or {}).get("metrics") or {}
    total_cpu = sum(n["cpu"]["capacity_cores"] for n in nodes)
    total_memory = sum(n["memory"]["capacity_bytes"] for n in nodes)
    cpu = metrics.get("cpu", {}).get("total_free_cores", 0) / total_cpu if total_cpu else 0
    memory = (
        metrics.get("memory", {}).get("total_free_bytes", 0) / total_memory if total_memory else 0
    )
    return 100 - round((cpu * memory) ** 0.5 * 100)


def wrap_event(event: bytes, storage_provider: str) -> bytes:
    """``eventBuild``: ``{"storage_provider", "event"}`` around the original event (an event
    already wrapped keeps its provider); a body that is no JSON object becomes empty."""
    try:
        decoded = json.loads(event)
    except ValueError:
        return b""
    if not isinstance(decoded, dict):
        return b""
    if "storage_provider" in decoded:
        provider, inner = decoded["storage_provider"], decoded.get("event")
        if not isinstance(provider, str) or not isinstance(inner, str):
            raise GoPanic("interface conversion: interface {} is not string")
        return json.dumps({"storage_provider": provider, "event": inner}).encode()
    text = event.decode("utf-8", "replace")
    return json.dumps({"storage_provider": storage_provider, "event": text}).encode()


def storage_provider(service: Service) -> str:
    """``delegationStorageProvider``: the first output's provider (``<type>.<id>``)."""
    for output in service.output or []:
        if output.storage_provider.strip():
            kind, _, ident = output.storage_provider.strip().partition(".")
            return f"{kind.lower()}.{ident.strip() or 'default'}"
    return service.cluster_id.strip()


def delegate(
    service: Service, event: bytes, job_id: str, auth_header: str, refresh_token: str
) -> bool:
    """``DelegateJob``: the job goes to the first ``oscar`` member, by priority, that takes it
    (201); True when one did. (The ``topsis`` delegation is not emulated: no member.)"""
    if not members(service):
        return False
    if (service.federation.delegation or "").lower() == "topsis":  # type: ignore[union-attr]
        return False
    token = delegation_token(service, refresh_token, auth_header)
    body = wrap_event(event, storage_provider(service))
    for replica in _priorities(service, token, auth_header):
        if replica.type.lower() != "oscar" or replica.priority >= NO_DELEGATE:
            continue
        cluster = (service.clusters or {}).get(replica.cluster_id)
        if cluster is None:
            continue
        headers = {**(replica.headers or {}), "X-Delegated-Job-ID": job_id}
        headers["X-Delegated-From"] = service.cluster_id
        if token:
            headers["Authorization"] = f"Bearer {token}"
        else:
            _auth(headers, auth_header if auth_header.startswith("Bearer ") else "", cluster)
        try:
            with _client(cluster) as client:
                url = _url(cluster, "job", replica.service_name)
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            continue
        if response.status_code == 201:
            return True
    return False
