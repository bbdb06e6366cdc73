"""What creating, updating and deleting a service does in MinIO: grycap/oscar
``pkg/handlers/create.go`` (``createBuckets`` and the policy and tag loop of
``MakeCreateHandler``), ``update.go`` (``MakeUpdateHandler``'s bucket part) and ``delete.go``
(``deleteBuckets``, ``DeleteMinIOBuckets``), at each release the profile names.

OSCAR keeps going after some failures: it writes an error answer and carries on (Gin keeps
the first answer written, the service is created or updated all the same). Those answers are
returned as :class:`Written`; failures that end the request raise :class:`.rules.StateError`.
Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from airflow_provider_oscar.local.minio import (
    ALL_USERS_GROUP,
    PRIVATE,
    PUBLIC,
    RESTRICTED,
    MinIOAdmin,
    MinIOBucket,
    MinIOError,
    generate_secret,
)
from airflow_provider_oscar.local.profiles import Profile
from airflow_provider_oscar.local.rules import Invalid, StateError
from airflow_provider_oscar.local.types.service import DEFAULT_OWNER, Service
from airflow_provider_oscar.local.types.storage import StorageIOConfig

ERR_INPUT = "unrecognized input (valid inputs are MinIO and dCache)"
_MOUNT_OPTS = re.compile(r"^[a-zA-Z0-9\-_.:=,/ ]+$")  # resources/mount.go validMountOptsRe


@dataclass(frozen=True)
class Written:
    """An answer a handler wrote and went on past (``c.String`` without ``return``)."""

    status: int
    text: str


class Panic(StateError):
    """A Go runtime panic in a handler: Gin's Recovery answers 500 with an empty body."""

    status = 500


def webhook_arn(service: Service, region: str) -> str:
    """types/service.go ``GetMinIOWebhookARN``."""
    return f"arn:minio:sqs:{region}:{service.name}:webhook"


def _split(path: str) -> list[str]:
    return path.strip(" /").split("/", 1)


def _minio(io: StorageIOConfig) -> bool:
    return io.provider_type == "minio"


class ServiceBuckets:
    """A service's buckets, policies, tags and webhook on the embedded MinIO."""

    def __init__(self, admin: MinIOAdmin, profile: Profile, region: str) -> None:
        self.admin = admin
        self.profile = profile
        self.region = region

    # create.go ----------------------------------------------------------------------------

    def prepare_isolation(self, service: Service, uid: str) -> None:
        """MakeCreateHandler/MakeUpdateHandler for ``isolation_level: USER`` with allowed
        users: a MinIO user for each allowed user without one, a ``<bucket>-<uid[:10]>`` per
        user in ``bucket_list``, and the owner added to ``allowed_users``. Go panics on a uid
        shorter than 10 characters."""
        users = service.allowed_users or []
        if not users:
            return
        for io in service.input or []:
            if not _minio(io):
                continue
            bucket = _split(io.path)[0]
            if len(uid) < 10:
                raise Panic()
            service.labels = {**(service.labels or {}), "uid": uid[:10]}
            owner_listed = False
            for user in users:
                if not self.admin.iam.user_exists(user):
                    self.admin.create_minio_user(user, generate_secret(8))
                owner_listed = owner_listed or user == service.owner
                if len(user) < 10:
                    raise Panic()
                service.bucket_list = [*(service.bucket_list or []), f"{bucket}-{user[:10]}"]
            if not owner_listed:
                users = [*users, uid]
                service.allowed_users = users

    def after_create(self, service: Service, uid: str, admin: bool) -> list[Written]:
        """From ``registerMinIOWebhook`` to the tags: the webhook, the buckets, then each
        bucket's policies (OIDC owners only) and tags. Raises after undoing nothing: the
        caller deletes the service."""
        self.admin.register_webhook(service.name, service.token)
        try:
            buckets = self.create_buckets(service, admin=admin, update=False)
        except MinIOError as exc:
            if "already exists" not in str(exc):
                with contextlib.suppress(MinIOError):  # logged
                    self.delete_buckets(service)
            raise (Invalid if str(exc) == ERR_INPUT else StateError)(str(exc)) from None
        written: list[Written] = []
        owner_name = "oscar" if admin else uid
        for bucket in buckets:
            if not service.visibility:
                bucket.visibility = PRIVATE
            if service.owner != DEFAULT_OWNER:
                try:
                    self.admin.set_policies(bucket)
                except MinIOError as exc:
                    written.append(Written(500, f"Error creating the service: {exc}"))
            tags = {"owner": uid, "from_service": service.name, "owner_name": owner_name}
            try:
                self.admin.set_tags(bucket.bucket_name, tags)
            except MinIOError as exc:
                raise Invalid(f"Error tagging bucket: {exc}") from None
        return written

    def create_buckets(self, service: Service, *, admin: bool, update: bool) -> list[MinIOBucket]:
        """``createBuckets``: inputs (with their webhook), isolated user buckets, outputs, the
        mount. An existing bucket is an error on create, ignored on update."""
        buckets: list[MinIOBucket] = []
        arn = webhook_arn(service, self.region)
        user_isolation = (service.isolation_level or "").upper() == "USER"

        def new(name: str) -> MinIOBucket:
            return MinIOBucket(name, service.visibility, service.allowed_users, service.owner)

        def attempt(call: object, *args: object) -> None:
            try:
                call(*args)  # type: ignore[operator]
            except MinIOError:
                if not update:
                    raise

        for io in service.input or []:
            if io.provider_type not in ("minio", "webdav", "rucio"):
                raise MinIOError(ERR_INPUT)
            if io.provider_type != "minio":
                continue
            path = _split(io.path)
            folder = self._folder(path)
            attempt(self.admin.create_s3_path_with_webhook, path, arn, False)
            buckets.append(new(path[0]))
            if user_isolation and service.bucket_list:
                users = service.allowed_users or []
                for i, user_bucket in enumerate(service.bucket_list):
                    target = (
                        [user_bucket, folder]
                        if folder or not self.profile.since("v4.1.0")
                        else [user_bucket]
                    )
                    try:
                        self.admin.create_s3_path_with_webhook(target, arn, False)
                    except MinIOError:
                        if update:
                            continue
                        raise
                    if not admin:
                        if i >= len(users):
                            raise Panic()  # service.AllowedUsers[i]: index out of range
                        self.admin.create_add_policy(user_bucket, users[i], ["s3:*"], False)
        for io in service.output or []:
            if io.provider_type not in ("minio", "s3"):
                continue
            path = _split(io.path)
            folder = self._folder(path)
            known = any(b.bucket_name == path[0] for b in buckets)
            if not known:
                buckets.append(new(path[0]))
            attempt(self.admin.create_s3_path, path, known)
            if user_isolation and service.bucket_list:
                for user_bucket in service.bucket_list:
                    attempt(self.admin.create_s3_path, [user_bucket, folder], True)
        self._mount(service, buckets, admin, update)
        return buckets

    def _folder(self, path: list[str]) -> str:
        """The ``<folder>/`` of a path; before v4.1.0 a path without one panics."""
        if len(path) > 1 and path[1].strip():
            return f"{path[1]}/"
        if not self.profile.since("v4.1.0"):
            raise Panic()  # folderKey := fmt.Sprintf("%s/", splitPath[1]): index out of range
        return ""

    def _mount(
        self, service: Service, buckets: list[MinIOBucket], admin: bool, update: bool
    ) -> None:
        mount = service.mount
        if not mount.storage_provider:
            return
        if self.profile.since("v4.1.0") and mount.options and not _MOUNT_OPTS.match(mount.options):
            raise MinIOError("mount options contain invalid characters")
        if mount.provider_type != "minio" or mount.provider_id != "default":
            return
        path = _split(mount.path)
        if any(b.bucket_name == path[0] for b in buckets):
            try:
                self.admin.create_s3_path(path, True)
            except MinIOError:
                if not update:
                    raise
            return
        if path[0] in self.admin.bucket_names():
            probe = MinIOBucket(path[0], owner=service.owner)
            visibility = self.admin.get_current_resource_visibility(probe)
            if self.profile.since("v4.1.0") and admin and visibility == "":
                try:
                    owner = self.admin.get_tagged_metadata(path[0]).get("owner", "")
                except MinIOError:
                    owner = ""
                if owner in ("oscar", ""):
                    visibility = PRIVATE
            if visibility != PRIVATE:
                raise MinIOError(f'the bucket "{path[0]}" must be private to be used as mount')
            buckets.append(
                MinIOBucket(path[0], service.visibility, service.allowed_users, service.owner)
            )
            try:
                self.admin.create_s3_path(path, True)
            except MinIOError:
                if not update:
                    raise
            return
        buckets.append(
            MinIOBucket(path[0], service.visibility, service.allowed_users, service.owner)
        )
        self.admin.create_s3_path(path, False)

    # delete.go ----------------------------------------------------------------------------

    def after_delete(self, service: Service) -> list[Written]:
        """MakeDeleteHandler after the service is gone: the mount group emptied, the webhook
        removed, the buckets deleted (not the mount's), isolated buckets out of the users'
        policies."""
        written: list[Written] = []
        if service.mount.path:
            with contextlib.suppress(MinIOError):  # logged
                self.admin.create_add_group(_split(service.mount.path)[0], [], remove=True)
        self.admin.remove_webhook(service.name)
        try:
            self.delete_buckets(service)
        except MinIOError as exc:
            text = str(exc)
            if "NoSuchBucket: The specified bucket does not exist" not in text and (
                f"policy '{ALL_USERS_GROUP}' does not exist" not in text
            ):
                extra = f"%!(EXTRA *errors.errorString={text})"
                written.append(Written(500, f"Error deleting service buckets: {extra}"))
        if service.bucket_list and (service.isolation_level or "").upper() == "USER":
            users = service.allowed_users or []
            for i, bucket in enumerate(service.bucket_list):
                try:
                    if i >= len(users):
                        raise Panic()
                    self.admin.remove_resource(bucket, users[i], False)
                except MinIOError as exc:
                    written.append(Written(500, f"error while removing isolated bucket {exc}"))
        return written

    def delete_buckets(self, service: Service) -> None:
        """``deleteBuckets``: inputs and outputs not shared with the mount, then isolated
        user buckets; a bucket shared with the mount is kept, tagged ``service: false``."""
        arn = webhook_arn(service, self.region)
        mount_bucket = _split(service.mount.path)[0] if service.mount.storage_provider else None

        def same_as_mount(io: StorageIOConfig) -> bool:
            mount = service.mount
            return (
                io.provider_id == mount.provider_id
                and io.provider_type == mount.provider_type
                and _split(io.path)[0] == _split(mount.path)[0]
            )

        def remove(bucket: str, io: StorageIOConfig) -> None:
            with contextlib.suppress(MinIOError):  # logged
                self.admin.disable_input_notifications(arn, bucket)
            if mount_bucket is not None and same_as_mount(io):
                self.admin.set_tags(bucket, {"owner": service.owner, "service": "false"})
                return
            self.delete_minio_bucket(
                MinIOBucket(bucket, service.visibility, service.allowed_users, service.owner)
            )

        inputs = []
        for io in service.input or []:
            if io.provider_type not in ("minio", "webdav", "rucio"):
                raise MinIOError(ERR_INPUT)
            if io.provider_type != "minio":
                continue
            bucket = _split(io.path)[0]
            inputs.append((io.provider_type, io.provider_id, bucket))
            remove(bucket, io)
        for io in service.output or []:
            if io.provider_type not in ("minio", "s3"):
                continue
            bucket = _split(io.path)[0]
            if (io.provider_type, io.provider_id, bucket) not in inputs:
                remove(bucket, io)
        if (service.isolation_level or "").upper() == "USER":
            for bucket in service.bucket_list or []:
                with contextlib.suppress(MinIOError):  # logged
                    self.admin.disable_input_notifications(arn, bucket)
                with contextlib.suppress(MinIOError):  # logged
                    self.delete_minio_bucket(MinIOBucket(bucket, PRIVATE, [], service.owner))

    def delete_minio_bucket(self, bucket: MinIOBucket) -> None:
        """``DeleteMinIOBuckets``: the bucket out of its policies (OIDC owners), then gone."""
        public = bucket.visibility.lower() == PUBLIC
        if bucket.owner != DEFAULT_OWNER:
            try:
                self.admin.remove_resource(
                    bucket.bucket_name, ALL_USERS_GROUP if public else bucket.owner, public
                )
            except MinIOError:
                raise MinIOError(
                    "error while removing MinIO bucket error removing resource"
                ) from None
            if bucket.visibility.lower() == RESTRICTED:
                try:
                    self.admin.remove_group_policy(bucket.bucket_name)
                except MinIOError:
                    raise MinIOError(
                        "error while removing MinIO bucket error removing policy for group"
                    ) from None
        try:
            self.admin.delete_bucket(bucket.bucket_name)
        except MinIOError as exc:
            raise MinIOError(
                f"error while removing MinIO bucket error deleting bucket {bucket.bucket_name}, "
                f"{exc}"
            ) from None

    # update.go ----------------------------------------------------------------------------

    def after_update(self, old: Service, new: Service, admin: bool) -> list[Written]:
        """MakeUpdateHandler's bucket part: isolated buckets no longer listed are deleted,
        new paths created (errors ignored), policies follow the visibility, buckets no longer
        used become private, a new bucket registers the webhook again."""
        written: list[Written] = []
        arn = webhook_arn(old, self.region)
        if old.isolation_level == "USER" and old.bucket_list:
            for name in old.bucket_list:
                if name in (new.bucket_list or []):
                    continue
                with contextlib.suppress(MinIOError):  # logged
                    self.admin.disable_input_notifications(arn, name)
                with contextlib.suppress(MinIOError):  # logged
                    self.delete_minio_bucket(MinIOBucket(name, PRIVATE, [], old.owner))
        try:
            buckets = self.create_buckets(new, admin=admin, update=True)
        except MinIOError as exc:
            raise StateError(str(exc)) from None
        old_buckets = {
            _split(io.path)[0]: True
            for io in [*(old.input or []), *(old.output or [])]
            if _minio(io)
        }
        for bucket in buckets:
            if old_buckets.get(bucket.bucket_name) is not None:
                if old.visibility != new.visibility:
                    previous = MinIOBucket(
                        bucket.bucket_name, old.visibility, old.allowed_users, old.owner
                    )
                    try:
                        self.admin.unset_policies(previous)
                    except MinIOError as exc:
                        written.append(Written(500, f"Error creating the service: {exc}"))
                    if not new.visibility:
                        bucket.visibility = PRIVATE
                    try:
                        self.admin.set_policies(bucket)
                    except MinIOError as exc:
                        written.append(Written(500, f"Error creating the service: {exc}"))
                elif new.visibility == RESTRICTED:
                    try:
                        self.admin.update_service_group(bucket.bucket_name, new.allowed_users or [])
                    except MinIOError as exc:
                        written.append(Written(500, f"Error creating the service: {exc}"))
                old_buckets[bucket.bucket_name] = False
            else:
                try:
                    self.admin.set_policies(bucket)
                except MinIOError as exc:
                    written.append(Written(500, f"Error creating the service: {exc}"))
                self.admin.register_webhook(new.name, new.token)
        for unused_name, unused in old_buckets.items():
            if unused:
                try:
                    self.admin.set_policies(MinIOBucket(unused_name, PRIVATE))
                except MinIOError as exc:
                    written.append(Written(500, f"error setting new policies: {exc}"))
        return written
