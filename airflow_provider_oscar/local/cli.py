"""``oscar-local``: run an embedded OSCAR until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from airflow_provider_oscar.local.cluster import Settings
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.storage import S3Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="oscar-local",
        description="An OSCAR-compatible server with S3 storage that runs service scripts "
        "on this machine (for development and tests; never expose it).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--user", default="oscar", help="Basic-auth user for /system routes")
    parser.add_argument(
        "--password",
        default=os.environ.get("OSCAR_LOCAL_PASSWORD", ""),
        help="Basic-auth password (default: $OSCAR_LOCAL_PASSWORD, or a random one)",
    )
    parser.add_argument("--data-dir", type=Path, help="where job directories live (default: temp)")
    parser.add_argument("--total-cpu", type=float, help="CPU cores the job slots share")
    parser.add_argument("--job-timeout", type=float, default=600.0, help="job time limit (s)")
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("OSCAR_LOCAL_S3_ENDPOINT", ""),
        help="use this S3/MinIO endpoint instead of starting one ($OSCAR_LOCAL_S3_ENDPOINT)",
    )
    parser.add_argument("--s3-access-key", default=os.environ.get("OSCAR_LOCAL_S3_ACCESS_KEY", ""))
    parser.add_argument("--s3-secret-key", default=os.environ.get("OSCAR_LOCAL_S3_SECRET_KEY", ""))
    args = parser.parse_args(argv)
    if args.s3_endpoint and not (args.s3_access_key and args.s3_secret_key):
        parser.error("--s3-endpoint needs --s3-access-key and --s3-secret-key")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(user=args.user, password=args.password, job_timeout=args.job_timeout)
    if args.total_cpu:
        settings.total_cpu = args.total_cpu
    s3 = (
        S3Settings(args.s3_endpoint, args.s3_access_key, args.s3_secret_key)
        if args.s3_endpoint
        else None
    )
    server = OscarLocal(
        host=args.host, port=args.port, data_dir=args.data_dir, s3=s3, settings=settings
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"OSCAR endpoint:  {server.endpoint}  (user {server.user})", flush=True)
        print(f"S3 endpoint:     {server.s3.endpoint}", flush=True)
        print(f"Airflow connection:\n  AIRFLOW_CONN_OSCAR_DEFAULT='{server.connection_json()}'")
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
