"""grycap/oscar ``pkg/utils/minio.go``: the MinIO admin client OSCAR's handlers use, over the
embedded MinIO (:mod:`.s3`). Identical at v3.6.5, v3.7.1, v4.0.0 and v4.1.2 for everything
here (v4.1 adds bucket quotas and usage, which :mod:`.handlers.buckets` reads).

Visibility lives in MinIO policies, not in a field: a private or restricted bucket is a resource
``arn:aws:s3:::<bucket>/*`` of the owner's user policy (``s3:*``); a restricted one also has a
group named after the bucket, holding the allowed users, with a policy of the same name
(``RESTRICTED_ACTIONS``); a public one is a resource of ``all_users_group``'s policy, and every
OIDC user joins that group when its MinIO user is created. ``GetCurrentResourceVisibility``
reads it back. The methods keep OSCAR's error texts (they reach clients inside OSCAR's answers).
All of them block: call them from a worker thread.
"""

from __future__ import annotations

import base64
import io
import posixpath
import secrets
from dataclasses import dataclass, field

from minio.error import S3Error

from airflow_provider_oscar.local.s3.events import NotificationError, QueueConfig
from airflow_provider_oscar.local.s3.iam import ARN_PREFIX, IAMError, Policy
from airflow_provider_oscar.local.s3.server import MinIOServer

ALL_USERS_GROUP = "all_users_group"
PRIVATE, RESTRICTED, PUBLIC = "private", "restricted", "public"
ALL_ACTIONS = ["s3:*"]
RESTRICTED_ACTIONS = ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
OVERLAPPING = "An object key name filtering rule defined with overlapping prefixes"
SECRET_KEY_LENGTH = 10  # auth/oidc.go SecretKeyLength


class MinIOError(Exception):
    """An error of the admin client, with OSCAR's text."""


@dataclass
class MinIOBucket:
    """``utils.MinIOBucket`` (the JSON of ``/system/buckets``)."""

    bucket_name: str
    visibility: str = ""
    allowed_users: list[str] | None = None
    owner: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def generate_secret(length: int = SECRET_KEY_LENGTH) -> str:
    """auth/multitenancy.go GenerateRandomKey: ``length`` random bytes, base64url unpadded."""
    return base64.urlsafe_b64encode(secrets.token_bytes(length)).rstrip(b"=").decode()


class MinIOAdmin:
    """``MinIOAdminClient``: users, policies, tags, webhooks and bucket paths."""

    def __init__(self, server: MinIOServer) -> None:
        self.server = server
        self.iam = server.iam
        self.store = server.store

    # users and groups ----------------------------------------------------------------------

    def create_minio_user(self, access_key: str, secret_key: str) -> None:
        """``CreateMinIOUser``: the user, and its place in ``all_users_group``."""
        try:
            self.iam.add_user(access_key, secret_key)
        except IAMError as exc:
            raise MinIOError(f"error creating MinIO user: {exc}") from None
        self.create_add_group(ALL_USERS_GROUP, [access_key], remove=False)

    def create_all_users_group(self) -> None:
        """``CreateAllUsersGroup`` (auth.go ``CustomAuth`` calls it at start)."""
        try:
            self.iam.update_group_members(ALL_USERS_GROUP, [], remove=False)
        except IAMError as exc:
            raise MinIOError(f"error creating MinIO group {ALL_USERS_GROUP}: {exc}") from None

    def create_add_group(self, group: str, users: list[str], remove: bool) -> None:
        try:
            self.iam.update_group_members(group, list(users), remove)
        except IAMError as exc:
            raise MinIOError(f"error creating/updating MinIO group {group}: {exc}") from None

    def update_service_group(self, group: str, users: list[str]) -> None:
        """``UpdateServiceGroup``: remove members not in ``users``, then add ``users``."""
        try:
            members = self.iam.group_members(group)
        except IAMError as exc:
            raise MinIOError(f"error getting group description for {group}: {exc}") from None
        gone = [m for m in members if m not in users]
        if gone:
            try:
                self.create_add_group(group, gone, remove=True)
            except MinIOError as exc:
                raise MinIOError(f"error removing users for {group}: {exc}") from None
        try:
            self.create_add_group(group, users, remove=False)
        except MinIOError as exc:
            raise MinIOError(f"error updating users for {group}: {exc}") from None

    def get_bucket_members(self, bucket: str) -> list[str]:
        try:
            return self.iam.group_members(bucket)
        except IAMError as exc:
            raise MinIOError(f"error getting group description for {bucket}: {exc}") from None

    # policies -------------------------------------------------------------------------------

    def set_policies(self, bucket: MinIOBucket) -> None:
        if bucket.visibility in (RESTRICTED, PRIVATE):
            self.create_add_policy(bucket.bucket_name, bucket.owner, ALL_ACTIONS, False)
            if bucket.visibility == RESTRICTED:
                try:
                    self.create_add_group(bucket.bucket_name, bucket.allowed_users or [], False)
                except MinIOError as exc:
                    raise MinIOError(f"error creating bucket group: {exc}") from None
                try:
                    self.create_add_policy(
                        bucket.bucket_name, bucket.bucket_name, RESTRICTED_ACTIONS, True
                    )
                except MinIOError as exc:
                    raise MinIOError(f"error creating policy: {exc}") from None
        else:
            try:
                self.create_add_policy(bucket.bucket_name, ALL_USERS_GROUP, ALL_ACTIONS, True)
            except MinIOError as exc:
                raise MinIOError(f"error creating policy: {exc}") from None

    def unset_policies(self, bucket: MinIOBucket) -> None:
        public = bucket.visibility.lower() == PUBLIC
        policy = ALL_USERS_GROUP if public else bucket.owner
        try:
            self.remove_resource(bucket.bucket_name, policy, public)
        except MinIOError:
            raise MinIOError("error removing resource") from None
        if bucket.visibility.lower() == RESTRICTED:
            try:
                self.remove_group_policy(bucket.bucket_name)
            except MinIOError:
                raise MinIOError("error removing policy for group") from None

    def create_add_policy(
        self, bucket: str, policy_name: str, actions: list[str], is_group: bool
    ) -> None:
        resource = f"{ARN_PREFIX}{bucket}/*"
        try:
            policy = self.iam.policy(policy_name)
        except IAMError:
            policy = Policy.allowing(actions, resource)
        else:
            first = policy.statements[0]
            if first.effect == "Deny":
                policy = Policy.allowing(actions, resource)
            else:
                first.resources.append(resource)
        try:
            self.iam.add_policy(policy_name, policy)
        except IAMError as exc:
            raise MinIOError(
                f"error creating/adding MinIO policy for user/group {policy_name}: {exc}"
            ) from None
        try:
            self.iam.set_policy(policy_name, policy_name, is_group)
        except IAMError as exc:
            raise MinIOError(
                f"error setting MinIO policy for user/group {policy_name}: {exc}"
            ) from None

    def remove_resource(self, bucket: str, policy_name: str, is_group: bool) -> None:
        """``RemoveResource``: the bucket out of a policy (its last resource becomes a Deny on
        ``<bucket>notValid/*``)."""
        resource = f"{ARN_PREFIX}{bucket}/*"
        try:
            policy = self.iam.policy(policy_name)
        except IAMError as exc:
            raise MinIOError(f"policy '{policy_name}' does not exist: {exc}") from None
        first = policy.statements[0]
        if len(first.resources) == 1:
            first.effect = "Deny"
            first.resources = [f"{ARN_PREFIX}{bucket}notValid/*"]
        elif resource in first.resources:
            first.resources.remove(resource)
        try:
            self.iam.add_policy(policy_name, policy)
        except IAMError as exc:
            raise MinIOError(f"error creating MinIO policy {policy_name}: {exc}") from None
        try:
            self.iam.set_policy(policy_name, policy_name, is_group)
        except IAMError as exc:
            raise MinIOError(f"error setting MinIO policy for user {policy_name}: {exc}") from None

    def remove_group_policy(self, policy_name: str) -> None:
        """``RemoveGroupPolicy``: empty the group, remove it and its policy."""
        members = self.get_bucket_members(policy_name)
        try:
            self.create_add_group(policy_name, members, remove=True)
        except MinIOError as exc:
            raise MinIOError(f"error emptying group {policy_name}: {exc}") from None
        try:
            self.create_add_group(policy_name, [], remove=True)
        except MinIOError as exc:
            raise MinIOError(f"error removing group {policy_name}: {exc}") from None
        try:
            self.iam.remove_policy(policy_name)
        except IAMError as exc:
            raise MinIOError(f"error removing policy: {exc}") from None

    def resource_in_policy(self, policy_name: str, resource: str) -> bool:
        """``ResourceInPolicy``: whether ``<resource>/*`` is in the policy's first statement."""
        try:
            policy = self.iam.policy(policy_name)
        except IAMError:
            return False
        return f"{ARN_PREFIX}{resource}/*" in policy.statements[0].resources

    def get_current_resource_visibility(self, bucket: MinIOBucket) -> str:
        name = bucket.bucket_name
        if self.resource_in_policy(bucket.owner, name):
            return RESTRICTED if self.resource_in_policy(name, name) else PRIVATE
        if self.resource_in_policy(name, name):
            return RESTRICTED
        if self.resource_in_policy(ALL_USERS_GROUP, name):
            return PUBLIC
        return ""

    # tags -----------------------------------------------------------------------------------

    def set_tags(self, bucket: str, tags: dict[str, str]) -> None:
        if not self._bucket_exists(bucket):
            raise MinIOError(f"error setting tag on bucket {bucket}")
        self.server.set_tags(bucket, tags)

    def get_tagged_metadata(self, bucket: str) -> dict[str, str]:
        """``GetTaggedMetadata``; a bucket without tags is an error (``NoSuchTagSet``)."""
        tags = self.server.tags(bucket) if self._bucket_exists(bucket) else None
        if tags is None:
            raise MinIOError(f"error getting tags on bucket {bucket}: The TagSet does not exist")
        return tags

    def buckets_by_owner(self, owner: str) -> list[str]:
        """v4.1.0 ``ListBucketsByOwner``: buckets whose ``owner`` tag is ``owner``."""
        owned = []
        for name in self.bucket_names():
            tags = self.server.tags(name)
            if tags is not None and tags.get("owner") == owner:
                owned.append(name)
        return owned

    def used_bytes(self, buckets: list[str]) -> int:
        """``AggregateBucketStorageUsage`` over MinIO's data usage (computed when asked)."""
        return sum(o.size for name in buckets for o in self.store.list(name))

    # webhooks -------------------------------------------------------------------------------

    def register_webhook(self, name: str, token: str) -> None:
        """``RegisterWebhook`` (``notify_webhook:<name>``), then the server restart OSCAR
        waits 6 s for (not waited here)."""
        self.server.notifications.register_target(name, token)

    def remove_webhook(self, name: str) -> None:
        self.server.notifications.remove_target(name)

    # bucket paths ---------------------------------------------------------------------------

    def create_s3_path_with_webhook(self, path: list[str], arn: str, bucket_exists: bool) -> None:
        bucket = path[0]
        if not bucket_exists:
            self._create_bucket(bucket)
        if len(path) < 2:
            raise MinIOError(
                f'error enabling webhook for bucket, missing foler on path "[{" ".join(path)}]"'
            )
        folder = f"{path[1]}/"
        self._put_folder(bucket, folder)
        self.enable_input_notification(arn, bucket, folder)

    def create_s3_path(self, path: list[str], bucket_exists: bool) -> None:
        bucket = path[0]
        if not bucket_exists:
            self._create_bucket(bucket)
        if len(path) >= 2:
            self._put_folder(bucket, f"{path[1]}/")

    def enable_input_notification(self, arn: str, bucket: str, folder: str) -> None:
        notifications = self.server.notifications
        configs = notifications.configuration(bucket)
        configs.append(QueueConfig(arn, ("s3:ObjectCreated:*",), folder))
        try:
            notifications.set_configuration(bucket, configs)
        except NotificationError as exc:
            if OVERLAPPING not in str(exc):
                raise MinIOError(f"error enabling bucket notification: {exc}") from None

    def disable_input_notifications(self, arn: str, bucket: str) -> None:
        """``disableInputNotifications``: keep the queues of other services' webhooks only."""
        if not self._bucket_exists(bucket):
            raise MinIOError(f'error getting bucket "{bucket}" notifications: NoSuchBucket')
        own = arn.split(":")
        kept = [
            c
            for c in self.server.notifications.configuration(bucket)
            if c.arn.split(":")[5:] == own[5:] and c.arn.split(":")[4:5] != own[4:5]
        ]
        self.server.notifications.set_configuration(bucket, kept)

    def delete_bucket(self, bucket: str) -> None:
        """``DeleteBucket``: every object, then the bucket."""
        try:
            if not self.store.remove_bucket(bucket):
                raise MinIOError(
                    f'unable to delete bucket "{bucket}", NoSuchBucket: The specified bucket '
                    "does not exist"
                )
        except S3Error as exc:
            raise MinIOError(f'unable to delete bucket "{bucket}", {exc.code}') from None
        self.server.forget_bucket(bucket)

    def bucket_names(self) -> list[str]:
        return self.store.bucket_names()

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            return bool(self.store.client.bucket_exists(bucket))
        except ValueError:  # a name the client refuses (minio-go CheckValidBucketName)
            return False

    def _create_bucket(self, bucket: str) -> None:
        """``createBucket``: an existing bucket is an error; a name S3 refuses is aws-sdk-go's
        ``InvalidBucketName`` error."""
        try:
            if self._bucket_exists(bucket):
                raise MinIOError(f'the bucket "{bucket}" already exists\n')
            self.store.client.make_bucket(bucket)
        except (S3Error, ValueError):
            raise MinIOError(
                f"error creating bucket {bucket}: InvalidBucketName: The specified bucket is not "
                f"valid.\n\tstatus code: 400, request id: {secrets.token_hex(8).upper()}"
            ) from None

    def _put_folder(self, bucket: str, folder: str) -> None:
        """PutObject of ``<folder>/`` through aws-sdk-go, which cleans the path (``in//``
        becomes ``in/``) as its REST protocol does by default."""
        folder = posixpath.normpath(f"/{bucket}/{folder}")[len(bucket) + 2 :] + "/"
        if folder == "/":
            raise MinIOError(f'error creating folder "/" in bucket "{bucket}": BucketAlreadyExists')
        try:
            self.store.client.put_object(bucket, folder, io.BytesIO(b""), 0)
        except (S3Error, ValueError) as exc:
            raise MinIOError(
                f'error creating folder "{folder}" in bucket "{bucket}": {exc}'
            ) from None


def format_storage(value: int) -> str:
    """minio.go ``FormatStorageBytes`` (``1.5Ki``, ``2Gi``; bytes below 1 KiB as they are)."""
    for suffix, unit in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if value >= unit:
            return f"{value / unit:.1f}".removesuffix(".0") + suffix
    return str(value)
