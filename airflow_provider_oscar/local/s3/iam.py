"""MinIO's identity and access management, as the embedded S3 store enforces it.

What OSCAR drives through madmin (users, groups, canned policies and their mappings) and how
MinIO decides a request with them. Sources: minio/minio ``cmd/iam.go`` (``policyDBSet`` refuses
an unknown user or group, ``AddUsersToGroup`` an unknown member, ``RemoveUsersFromGroup`` a
group that still has members when none are named), ``pkg/iam/policy/statement.go``
``Statement.IsAllowed`` (a bucket-level request is matched as ``<bucket>/``, so ``<bucket>/*``
covers the bucket itself), ``resource.go`` ``Resource.Match`` and ``policy.go`` (any matching
Deny wins, then any matching Allow). The root user is allowed everything.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache

ARN_PREFIX = "arn:aws:s3:::"

# madmin error texts (cmd/admin-handler-utils.go toAdminAPIErr, cmd/api-errors.go)
NO_SUCH_USER = "The specified user does not exist."
NO_SUCH_GROUP = "The specified group does not exist."
NO_SUCH_POLICY = "The canned policy does not exist."
GROUP_NOT_EMPTY = "The specified group is not empty - cannot remove it."
INVALID_ARGUMENT = "Invalid arguments specified."


class IAMError(Exception):
    """A madmin call MinIO refuses; ``str()`` is the message madmin's error carries."""


@dataclass
class Statement:
    effect: str
    actions: list[str]
    resources: list[str]

    def matches(self, action: str, resource: str) -> bool:
        return any(_wildcard(a).fullmatch(action) for a in self.actions) and any(
            _resource_matches(r, resource) for r in self.resources
        )


@dataclass
class Policy:
    """A canned policy as OSCAR writes it (``utils.Policy``: Version, Statement)."""

    statements: list[Statement]
    version: str = "2012-10-17"

    @classmethod
    def allowing(cls, actions: list[str], resource: str) -> Policy:
        """``getPolicyDefinition``: one Allow statement."""
        return cls([Statement("Allow", list(actions), [resource])])

    def to_json(self) -> bytes:
        statements = [
            {"Effect": s.effect, "Action": s.actions, "Resource": s.resources}
            for s in self.statements
        ]
        return json.dumps({"Version": self.version, "Statement": statements}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Policy:
        data = json.loads(raw)
        statements = [
            Statement(s["Effect"], list(s["Action"]), list(s.get("Resource") or []))
            for s in data["Statement"]
        ]
        return cls(statements, data.get("Version", "2012-10-17"))


@dataclass
class Group:
    members: list[str] = field(default_factory=list)
    enabled: bool = True


class IAM:
    """Users (access key → secret key), groups, canned policies and their mappings."""

    def __init__(self, root_access_key: str, root_secret_key: str) -> None:
        self.root_access_key = root_access_key
        self.root_secret_key = root_secret_key
        self._lock = threading.RLock()
        self._users: dict[str, str] = {}
        self._groups: dict[str, Group] = {}
        self._policies: dict[str, bytes] = {}
        self._user_policy: dict[str, str] = {}
        self._group_policy: dict[str, str] = {}

    # users and groups (madmin AddUser, UpdateGroupMembers, GetGroupDescription) ------------

    def add_user(self, access_key: str, secret_key: str) -> None:
        if not access_key or len(secret_key) < 8:
            raise IAMError(INVALID_ARGUMENT)
        with self._lock:
            self._users[access_key] = secret_key

    def user_exists(self, access_key: str) -> bool:
        with self._lock:
            return access_key in self._users

    def secret_key(self, access_key: str) -> str | None:
        """The secret of a user (the root user's included), ``None`` for an unknown key."""
        if access_key == self.root_access_key:
            return self.root_secret_key
        with self._lock:
            return self._users.get(access_key)

    def update_group_members(self, group: str, members: list[str], remove: bool) -> None:
        if not group:
            raise IAMError(INVALID_ARGUMENT)
        with self._lock:
            current = self._groups.get(group)
            if remove:
                if current is None:
                    raise IAMError(NO_SUCH_GROUP)
                if not members:
                    if current.members:
                        raise IAMError(GROUP_NOT_EMPTY)
                    del self._groups[group]
                    self._group_policy.pop(group, None)
                    return
                current.members = [m for m in current.members if m not in members]
                return
            for member in members:
                if member not in self._users:
                    raise IAMError(NO_SUCH_USER)
            current = self._groups.setdefault(group, Group())
            current.members += [m for m in members if m not in current.members]

    def group_members(self, group: str) -> list[str]:
        with self._lock:
            current = self._groups.get(group)
            if current is None:
                raise IAMError(NO_SUCH_GROUP)
            return list(current.members)

    # canned policies (madmin InfoCannedPolicyV2, AddCannedPolicy, SetPolicy) -----------------

    def policy(self, name: str) -> Policy:
        with self._lock:
            raw = self._policies.get(name)
        if raw is None:
            raise IAMError(NO_SUCH_POLICY)
        return Policy.from_json(raw)

    def add_policy(self, name: str, policy: Policy) -> None:
        if not name or not policy.statements:
            raise IAMError(INVALID_ARGUMENT)
        with self._lock:
            self._policies[name] = policy.to_json()

    def remove_policy(self, name: str) -> None:
        with self._lock:
            if self._policies.pop(name, None) is None:
                raise IAMError(NO_SUCH_POLICY)
            for mapping in (self._user_policy, self._group_policy):
                for entity in [e for e, p in mapping.items() if p == name]:
                    del mapping[entity]

    def set_policy(self, name: str, entity: str, is_group: bool) -> None:
        if not entity:
            raise IAMError(INVALID_ARGUMENT)
        with self._lock:
            if name not in self._policies:
                raise IAMError(NO_SUCH_POLICY)
            if is_group:
                if entity not in self._groups:
                    raise IAMError(NO_SUCH_GROUP)
                self._group_policy[entity] = name
            else:
                if entity not in self._users:
                    raise IAMError(NO_SUCH_USER)
                self._user_policy[entity] = name

    # evaluation ------------------------------------------------------------------------------

    def is_allowed(self, access_key: str, action: str, bucket: str, key: str = "") -> bool:
        """``IAMSys.IsAllowed`` for a user's request on ``bucket`` (and ``key``)."""
        if access_key == self.root_access_key:
            return True
        resource = f"{bucket}/{key.lstrip('/')}" if key else f"{bucket}/"
        with self._lock:
            names = [self._user_policy.get(access_key)]
            names += [
                self._group_policy.get(g)
                for g, info in self._groups.items()
                if info.enabled and access_key in info.members
            ]
            statements = [
                s
                for name in names
                if name and name in self._policies
                for s in Policy.from_json(self._policies[name]).statements
            ]
        if any(s.effect == "Deny" and s.matches(action, resource) for s in statements):
            return False
        return any(s.effect == "Allow" and s.matches(action, resource) for s in statements)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """minio ``wildcard.Match``: ``*`` is any run of characters, ``?`` one character."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def _resource_matches(arn: str, resource: str) -> bool:
    if not arn.startswith(ARN_PREFIX):
        return False
    pattern = arn[len(ARN_PREFIX) :]
    return resource.rstrip("/") == pattern or bool(_wildcard(pattern).fullmatch(resource))
