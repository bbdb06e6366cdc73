"""``s3_front_overhead_ratio``: what the embedded MinIO's front costs a client per request.

The same 200 PUT and GET pairs of 4 KiB objects with a MinIO client, once through the front
(signature check, policy, forwarding, events) and once straight to the object store behind it,
alternating in rounds of 20 so both see the same machine load; the figure is front time over
direct time (the front's work plus one more loopback hop).
"""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.storage import S3Settings
from benchmarks.figures import Figure, render

PAIRS = 200
ROUND = 20
PAYLOAD = b"x" * 4096


def _client(settings: S3Settings) -> Minio:
    return Minio(
        urlsplit(settings.endpoint).netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=False,
        region=settings.region,
    )


def _pairs(client: Minio, bucket: str, start: int, count: int) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        client.put_object(bucket, f"o{i}", io.BytesIO(PAYLOAD), len(PAYLOAD))
        response = client.get_object(bucket, f"o{i}")
        response.read()
        response.close()
        response.release_conn()
    return time.perf_counter() - began


def measure() -> list[Figure]:
    with OscarLocal() as oscar:
        assert oscar.minio is not None
        front, direct = _client(oscar.s3), _client(oscar.minio.backend)
        front.make_bucket("bench-front")
        direct.make_bucket("bench-direct")
        _pairs(front, "bench-front", 0, ROUND)  # warm-up, not timed
        _pairs(direct, "bench-direct", 0, ROUND)
        through, straight = 0.0, 0.0
        for start in range(0, PAIRS, ROUND):
            through += _pairs(front, "bench-front", start, ROUND)
            straight += _pairs(direct, "bench-direct", start, ROUND)
    detail = {
        "pairs": PAIRS,
        "object_bytes": len(PAYLOAD),
        "front_ms_per_request": through / (2 * PAIRS) * 1000,
        "direct_ms_per_request": straight / (2 * PAIRS) * 1000,
    }
    return [Figure("s3_front_overhead_ratio", through / straight, "<=", 3.0, detail)]


if __name__ == "__main__":
    print(render(measure()))
