"""A service's ``mount``: the bucket path its job pods see under ``/mnt``.

grycap/oscar ``pkg/backends/resources/mount.go`` ``SetMount`` (job pods only, ``job.go``):
an rclone sidecar mounts ``minio:/<path>`` at ``/mnt/<path>`` with the owner's MinIO keys (the
``minio`` secret for ``cluster_admin``, ``setMinIOEnvVars``), read-write. Here the path is a
directory of the job, filled from the bucket before the script runs and written back after
(new and changed files uploaded, removed ones deleted), and the script runs in its own mount
namespace where that directory is ``/mnt``: a user namespace mapping the caller to root, as
a container's root (``unshare --map-root-user --mount``). Where the machine allows no user
namespaces the script runs without ``/mnt`` and the job log says so.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_oscar.local.storage import ObjectStore

MNT = Path("/mnt")


@functools.cache
def namespaces() -> tuple[str, str] | None:
    """``unshare`` and ``mount`` when this machine lets a process bind-mount ``/mnt`` in its
    own namespaces (checked once); ``None`` otherwise."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not (unshare and mount and MNT.is_dir()):
        return None
    probe = [unshare, "--map-root-user", "--mount", mount, "--bind", "/tmp", str(MNT)]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (unshare, mount) if done.returncode == 0 else None


def in_namespace(argv: list[str], binds: list[tuple[Path, str]]) -> list[str] | None:
    """``argv`` run with each ``(directory, path)`` of ``binds`` bound at ``path`` (made when
    missing), in order; ``None`` where that cannot be done."""
    tools = namespaces()
    if tools is None:
        return None
    unshare, mount = tools
    steps = [
        f"mkdir -p {shlex.quote(path)} && {mount} --bind {shlex.quote(str(source))} "
        f"{shlex.quote(path)}"
        for source, path in binds
    ]
    shell = " && ".join([*steps, 'exec "$@"'])
    return [unshare, "--map-root-user", "--mount", "/bin/sh", "-c", shell, "sh", *argv]


@dataclass
class MountSync:
    """The mounted bucket path (``bucket/folder``) mirrored in ``root/<path>``."""

    store: ObjectStore
    path: str
    root: Path

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def prefix(self) -> str:
        parts = self.path.split("/", 1)
        return parts[1].strip("/") + "/" if len(parts) == 2 and parts[1].strip("/") else ""

    @property
    def local(self) -> Path:
        return self.root / self.path

    def pull(self) -> dict[str, tuple[int, int]]:
        """Download the path's objects; what was written, by relative name."""
        self.local.mkdir(parents=True, exist_ok=True)
        for obj in self.store.list(self.bucket, self.prefix):
            relative = obj.key[len(self.prefix) :]
            if not relative or relative.endswith("/"):
                continue
            target = self.local / relative
            if not target.resolve().is_relative_to(self.local.resolve()):
                continue  # never outside the mount (MinIO refuses such keys anyway)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.download(self.bucket, obj.key, target)
        return self._snapshot()

    def push(self, before: dict[str, tuple[int, int]]) -> None:
        """Write back what the script changed: new and modified files, removed ones."""
        after = self._snapshot()
        for relative, stamp in after.items():
            if before.get(relative) != stamp:
                self.store.upload(self.bucket, self.prefix + relative, self.local / relative)
        for relative in before.keys() - after.keys():
            self.store.client.remove_object(self.bucket, self.prefix + relative)

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        found = {}
        for directory, _, names in os.walk(self.local, followlinks=False):
            for name in names:
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    info = path.stat()
                    found[str(path.relative_to(self.local))] = (info.st_size, info.st_mtime_ns)
        return found
