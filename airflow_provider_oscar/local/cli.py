"""``oscar-local``: run an embedded OSCAR until interrupted.

Credentials stay off the command line: ``--password-file`` or ``$OSCAR_LOCAL_PASSWORD``, else a
generated password printed once. ``--password`` still works, with a warning (any local user
reads a command line through ``ps`` or ``/proc``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
from pathlib import Path

import httpx

from airflow_provider_oscar.crates import Crate, load_crate
from airflow_provider_oscar.errors import OscarDefinitionError
from airflow_provider_oscar.local.profiles import DEFAULT_VERSION, PROFILES, profile_for
from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.local.settings import Settings
from airflow_provider_oscar.local.storage import S3Settings

PASSWORD_WARNING = (
    "warning: --password is readable by every local user (ps, /proc); "
    "use --password-file or $OSCAR_LOCAL_PASSWORD"
)
REMOTE_WARNING = (
    "warning: listening on {host}, beyond this machine: whoever reaches it with the password "
    "runs scripts here"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    releases = ", ".join(f"{line} ({p.version})" for line, p in PROFILES.items())
    parser = argparse.ArgumentParser(
        prog="oscar-local",
        description="An OSCAR-compatible server with S3 storage that runs service scripts "
        "on this machine (for development and tests; never expose it).",
    )
    parser.add_argument(
        "--oscar-version",
        default=DEFAULT_VERSION,
        help=f"the OSCAR release to behave as: {releases} (default {DEFAULT_VERSION})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not a loopback address",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--user", default="oscar", help="Basic-auth user for /system routes")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="file whose first line is the Basic-auth password",
    )
    parser.add_argument(
        "--password", default="", help="Basic-auth password (discouraged: see --password-file)"
    )
    parser.add_argument("--data-dir", type=Path, help="where job directories live (default: temp)")
    parser.add_argument("--total-cpu", type=float, help="CPU cores the job slots share")
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=None,
        help="kill jobs after this many seconds (default: never, as OSCAR)",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=300.0,
        help="cut a /run after this many seconds, as OSCAR's WRITE_TIMEOUT (default 300)",
    )
    parser.add_argument(
        "--no-serverless-backend",
        action="store_true",
        help="behave as OSCAR without Knative: no /run, jobs only",
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="disable the /local/faults injection route"
    )
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("OSCAR_LOCAL_S3_ENDPOINT", ""),
        help="use this S3/MinIO endpoint instead of starting one ($OSCAR_LOCAL_S3_ENDPOINT)",
    )
    parser.add_argument(
        "--hub-crate",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="deploy the OSCAR Hub crate in this folder (its ro-crate-metadata.json names the "
        "FDL and the script) once started; repeat for several",
    )
    parser.add_argument("--s3-access-key", default=os.environ.get("OSCAR_LOCAL_S3_ACCESS_KEY", ""))
    parser.add_argument("--s3-secret-key", default=os.environ.get("OSCAR_LOCAL_S3_SECRET_KEY", ""))
    parser.add_argument(
        "--oidc-token",
        action="append",
        default=[],
        metavar="USER=TOKEN[:GROUP,...]",
        help="accept TOKEN as a bearer token of the OIDC user USER, a member of the GROUPs "
        "(default: vo.oscar-local); repeatable. Turns OIDC on",
    )
    parser.add_argument(
        "--oidc-groups",
        metavar="GROUP,...",
        help="the cluster's OIDC_GROUPS (default: vo.oscar-local and every GROUP named)",
    )
    args = parser.parse_args(argv)
    args.tokens, args.groups = {}, {}
    for spec in args.oidc_token:
        try:
            user, token, groups = parse_oidc_token(spec)
        except ValueError as exc:
            parser.error(f"--oidc-token {spec!r}: {exc}")
        if args.tokens.get(token, user) != user:
            parser.error(f"--oidc-token: one token for {args.tokens[token]} and {user}")
        args.tokens[token] = user
        if groups:
            args.groups[user] = list(dict.fromkeys([*args.groups.get(user, []), *groups]))
    if args.s3_endpoint and not (args.s3_access_key and args.s3_secret_key):
        parser.error("--s3-endpoint needs --s3-access-key and --s3-secret-key")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number")
    try:
        profile_for(args.oscar_version)
    except ValueError as exc:
        parser.error(str(exc))
    if not (_loopback(args.host) or args.allow_remote):
        parser.error(f"--host {args.host} is not a loopback address; add --allow-remote")
    try:
        args.crates = [load_crate(path) for path in args.hub_crate]
    except OscarDefinitionError as exc:
        parser.error(f"--hub-crate: {exc}")
    if args.password_file and args.password:
        parser.error("give --password-file or --password, not both")
    if args.password_file:
        try:
            lines = args.password_file.read_text().splitlines()
        except OSError as exc:
            parser.error(f"--password-file {args.password_file}: {exc.strerror or exc}")
        args.password = lines[0].strip() if lines else ""
        if not args.password:
            parser.error(f"--password-file {args.password_file} is empty")
    elif args.password:
        print(PASSWORD_WARNING, file=sys.stderr, flush=True)
    else:
        args.password = os.environ.get("OSCAR_LOCAL_PASSWORD", "")
    return args


def parse_oidc_token(spec: str) -> tuple[str, str, list[str]]:
    """``USER=TOKEN[:GROUP,...]`` as (user, token, groups); a token holds no ``:``."""
    user, equals, rest = spec.partition("=")
    token, _, groups = rest.partition(":")
    if not equals or not user.strip() or not token.strip():
        raise ValueError("expected USER=TOKEN[:GROUP,...]")
    names = [g.strip() for g in groups.split(",") if g.strip()]
    return user.strip(), token.strip(), names


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deploy_crates(server: OscarLocal, crates: list[Crate]) -> list[str]:
    """Create each crate's service, as ``oscar-cli hub deploy --local-path`` would."""
    names = []
    with httpx.Client(base_url=server.endpoint, auth=(server.user, server.password)) as client:
        for crate in crates:
            body = crate.service.to_api()
            body.pop("token", None)
            response = client.post("/system/services", json=body, timeout=60)
            if response.status_code != 201:
                raise OscarDefinitionError(
                    f"OSCAR Hub crate {crate.source}: creating service {crate.service.name!r} "
                    f"answered {response.status_code}: {response.text.strip()[:300]}"
                )
            names.append(crate.service.name)
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not _loopback(args.host):
        print(REMOTE_WARNING.format(host=args.host), file=sys.stderr, flush=True)
    settings = Settings(
        user=args.user,
        password=args.password,
        oscar_version=args.oscar_version,
        job_timeout=args.job_timeout,
        run_timeout=args.run_timeout,
        serverless_backend=not args.no_serverless_backend,
        faults_enabled=not args.no_faults,
        bearer_tokens=args.tokens,
        oidc_groups=args.groups,
    )
    if args.oidc_groups is not None:
        settings.cluster_groups = [g.strip() for g in args.oidc_groups.split(",") if g.strip()]
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
        try:
            names = deploy_crates(server, args.crates)
        except OscarDefinitionError as exc:
            print(f"oscar-local: {exc}", file=sys.stderr, flush=True)
            return 1
        for crate, name in zip(args.crates, names, strict=True):
            print(f"OSCAR Hub crate: {crate.slug} ({crate.title}) as service {name}", flush=True)
        print(f"OSCAR endpoint:  {server.endpoint}  (user {server.user})", flush=True)
        print(f"OSCAR release:   {server.profile.version}", flush=True)
        print(f"S3 endpoint:     {server.s3.endpoint}", flush=True)
        if args.tokens:
            users = sorted(set(args.tokens.values()))
            assert server.cluster is not None
            groups = ", ".join(server.cluster.config.oidc_groups or [])
            print(f"OIDC users:      {', '.join(users)} (cluster groups: {groups})", flush=True)
        connection = json.loads(server.connection_json())
        if args.password:  # the user's own: never echoed
            connection["password"] = "<the password you gave>"
            print("Airflow connection:", flush=True)
        else:
            print("Airflow connection (with the password generated for this run):", flush=True)
        print(f"  AIRFLOW_CONN_OSCAR_DEFAULT='{json.dumps(connection)}'", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
