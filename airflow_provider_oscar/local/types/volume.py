"""pkg/types/volume.go (v4.0.0): managed volumes, as ``/system/volumes`` shows them."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_oscar.local.types.gojson import go

CREATION_SERVICE, CREATION_API = "service", "api"
LIFECYCLE_DELETE, LIFECYCLE_RETAIN = "delete", "retain"
PHASE_PENDING, PHASE_READY, PHASE_IN_USE = "pending", "ready", "in_use"
PHASE_ERROR, PHASE_DELETING = "error", "deleting"


@dataclass
class VolumeAttachmentReference:
    service_name: str = go("service_name", "")
    mount_path: str = go("mount_path", "")


@dataclass
class VolumeStatus:
    phase: str = go("phase", "", omitempty=True)
    message: str = go("message", "", omitempty=True)
    attachment_count: int = go("attachment_count", 0, omitempty=True)


@dataclass
class ManagedVolume:
    name: str = go("name", "")
    namespace: str = go("namespace", "", omitempty=True)
    pvc_name: str = go("pvc_name", "", omitempty=True)
    size: str = go("size", "", omitempty=True)
    owner_user: str = go("owner_user", "", omitempty=True)
    created_by_service: str = go("created_by_service", "", omitempty=True)
    creation_mode: str = go("creation_mode", "", omitempty=True)
    lifecycle_policy: str = go("lifecycle_policy", "", omitempty=True)
    attachments: list[VolumeAttachmentReference] | None = go("attachments", omitempty=True)
    status: VolumeStatus = go("status", factory=VolumeStatus)


@dataclass
class ManagedVolumeCreateRequest:
    name: str = go("name", "", required=True)
    size: str = go("size", "", required=True)
