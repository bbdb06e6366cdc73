"""The state of the embedded MinIO: its store, its users and policies, bucket tags and
notifications, and the endpoint clients reach it on."""

from __future__ import annotations

import secrets
import threading
from urllib.parse import urlsplit

from airflow_provider_oscar.local.s3.events import Notifications
from airflow_provider_oscar.local.s3.iam import IAM
from airflow_provider_oscar.local.storage import ObjectStore, S3Settings


class MinIOServer:
    """What OSCAR's MinIO admin client and the S3 front share.

    ``backend`` is the object store behind the front (its keys sign every forwarded request);
    the root user's keys are the backend's, so an external MinIO keeps its own root user.
    """

    def __init__(self, backend: S3Settings) -> None:
        self.backend = backend
        self.store = ObjectStore(backend)  # the admin's direct line to the store
        self.iam = IAM(backend.access_key, backend.secret_key)
        self.notifications = Notifications(backend.region)
        self.endpoint = ""  # set once the front listens
        self._tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    @property
    def region(self) -> str:
        return self.backend.region

    @property
    def root(self) -> S3Settings:
        """The front's endpoint with the root user's keys (OSCAR's ``MinIOProvider``)."""
        return S3Settings(
            self.endpoint, self.iam.root_access_key, self.iam.root_secret_key, self.region
        )

    def user_settings(self, access_key: str, secret_key: str) -> S3Settings:
        return S3Settings(self.endpoint, access_key, secret_key, self.region)

    def client(self, access_key: str, secret_key: str) -> ObjectStore:
        """A blocking client of the front with a user's keys (a job pod's MinIO client)."""
        return ObjectStore(self.user_settings(access_key, secret_key))

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    # bucket tags (minio ``SetBucketTagging``/``GetBucketTagging``) -------------------------

    def set_tags(self, bucket: str, tags: dict[str, str]) -> None:
        with self._lock:
            self._tags[bucket] = dict(tags)

    def tags(self, bucket: str) -> dict[str, str] | None:
        """The bucket's tags; ``None`` when it has none (``NoSuchTagSet``)."""
        with self._lock:
            found = self._tags.get(bucket)
            return dict(found) if found is not None else None

    def drop_tags(self, bucket: str) -> None:
        with self._lock:
            self._tags.pop(bucket, None)

    def forget_bucket(self, bucket: str) -> None:
        """What MinIO drops with a bucket: its metadata (tags, notification configuration)."""
        self.drop_tags(bucket)
        self.notifications.forget_bucket(bucket)


def generated_keys() -> tuple[str, str]:
    """Root keys for a store started here (moto accepts any)."""
    return "minio" + secrets.token_hex(6), secrets.token_urlsafe(24)
