"""The bucket-event trigger keeps slow work off the triggerer's event loop.

The minio SDK, which signs the trigger's S3 requests, takes most of a second to import: imported
on the loop, it stalled every trigger of the triggerer when a watcher started ("Triggerer's async
thread was blocked"). A fresh interpreter (where nothing imported it yet) runs the trigger and
records, through an audit hook, which thread imports each minio module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading

    from airflow_provider_oscar.triggers.events import OscarBucketEventTrigger

    assert "minio" not in sys.modules, "minio was imported before the trigger ran"
    threads = {}

    def audit(event, args):
        if event == "import" and args[0].startswith("minio"):
            threads.setdefault(args[0], threading.current_thread() is threading.main_thread())

    sys.addaudithook(audit)

    async def main():
        trigger = OscarBucketEventTrigger(path=sys.argv[1], poll_interval=0.2)
        first = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(3)  # the first listing takes the baseline and writes the cursor
        first.cancel()

    asyncio.run(main())
    print(json.dumps(threads))
    """
)


def test_the_minio_sdk_is_imported_off_the_loop_thread(oscar: OscarLocal, s3: Minio) -> None:
    bucket = f"loop-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    env = {**os.environ, "AIRFLOW_CONN_OSCAR_DEFAULT": oscar.connection_json()}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"{bucket}/in/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    on_loop = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"minio.credentials", "minio.signer"} <= set(on_loop), on_loop
    assert not any(on_loop.values()), f"imported on the loop's thread: {on_loop}"
    cursors = [o.object_name for o in s3.list_objects(bucket, prefix=".oscar-events/")]
    assert len(cursors) == 1, "the trigger never got as far as writing its cursor"
