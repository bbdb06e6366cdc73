"""The storage triggers keep slow work off the triggerer's event loop.

The minio SDK, which signs their S3 requests, takes most of a second to import: imported on the
loop, it stalled every trigger of the triggerer when a bucket watcher or an output wait started
("Triggerer's async thread was blocked"). A fresh interpreter (where nothing imported it yet)
runs each trigger and records, through an audit hook, which thread imports each minio module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from minio import Minio

from airflow_provider_oscar.local.server import OscarLocal
from airflow_provider_oscar.triggers.cursor import CURSOR_FOLDER

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading

    from airflow_provider_oscar.triggers.events import OscarBucketEventTrigger
    from airflow_provider_oscar.triggers.storage import OscarOutputTrigger

    assert "minio" not in sys.modules, "minio was imported before the trigger ran"
    on_loop = {}

    def audit(event, args):
        if event == "import" and args[0].startswith("minio"):
            on_loop.setdefault(args[0], threading.current_thread() is threading.main_thread())

    sys.addaudithook(audit)
    kind, bucket = sys.argv[1:3]
    if kind == "events":
        trigger = OscarBucketEventTrigger(path=f"{bucket}/in/", poll_interval=0.2)
    else:
        trigger = OscarOutputTrigger(path=f"{bucket}/out/x", poll_interval=0.2)

    async def main():
        first = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(3)  # a few polls: the first one reads the bucket
        first.cancel()

    asyncio.run(main())
    print(json.dumps(on_loop))
    """
)


@pytest.mark.parametrize("kind", ["events", "output"])
def test_the_minio_sdk_is_imported_off_the_loop_thread(
    oscar: OscarLocal, s3: Minio, kind: str
) -> None:
    bucket = f"loop-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    env = {**os.environ, "AIRFLOW_CONN_OSCAR_DEFAULT": oscar.connection_json()}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, bucket],
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
    if kind == "events":
        cursors = [o.object_name for o in s3.list_objects(bucket, prefix=f"{CURSOR_FOLDER}/")]
        assert len(cursors) == 1, "the watcher never got as far as writing its cursor"
