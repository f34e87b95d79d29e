"""The StatefulSet of an instance and the patch that grows its volume."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from ..object_names import DATA_CLAIM
from ..sizing import mebibytes

GROUP_MIN_READY_SECONDS = 15
"""Longer than a Sentinel's INFO period (10 s): before a rollout stops the next pod, every Sentinel
has seen the restarted one back as a replica. A Sentinel that has not cannot pick it, and a handover
to the primary's other replica would then be the only one possible (or none, with a group of 2)."""
CLAIM_SIZE_FIELD = "spec.volumeClaimTemplates[0].spec.resources.requests.storage"
"""The template's size only sizes new claims and cannot change in place (a change would replace
the StatefulSet): Pulumi ignores changes to it, and the claims grow by ``claim_size_patch``."""


def data_claim_template(
    labels: dict[str, str], size_bytes: int, storage_class: str | None
) -> k8s.core.v1.PersistentVolumeClaimArgs:
    return k8s.core.v1.PersistentVolumeClaimArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(name=DATA_CLAIM, labels=labels),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": mebibytes(size_bytes)}),
        ),
    )


def statefulset_spec(
    *,
    service_name: pulumi.Input[str],
    selector: dict[str, str],
    template: k8s.core.v1.PodTemplateSpecArgs,
    claim: k8s.core.v1.PersistentVolumeClaimArgs | None,
    replicas: int = 1,
) -> k8s.apps.v1.StatefulSetSpecArgs:
    """``podManagementPolicy`` stays OrderedReady (the default, never set): a change to it would
    replace the StatefulSet. A new group's pods start one after the other, pod 0 first. A group's
    rollout waits ``GROUP_MIN_READY_SECONDS`` after each pod turns Ready before the next one."""
    return k8s.apps.v1.StatefulSetSpecArgs(
        service_name=service_name,
        replicas=replicas,
        min_ready_seconds=GROUP_MIN_READY_SECONDS if replicas > 1 else None,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
        # The data outlives the StatefulSet: deleting or replacing it keeps the volume.
        persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
            when_deleted="Retain", when_scaled="Retain"
        ),
        volume_claim_templates=[claim] if claim is not None else None,
        template=template,
    )


def claim_size_patch(
    claim: str, namespace: str, size_bytes: int
) -> tuple[k8s.meta.v1.ObjectMetaPatchArgs, k8s.core.v1.PersistentVolumeClaimSpecPatchArgs]:
    """Metadata and spec of the server-side-apply patch that keeps a claim's size: raising it
    expands the volume in place (the StorageClass must allow expansion; Kubernetes refuses a shrink)."""
    metadata = k8s.meta.v1.ObjectMetaPatchArgs(
        name=claim,
        namespace=namespace,
        annotations={
            # The claim was created (and sized) by the StatefulSet controller, which owns the field.
            "pulumi.com/patchForce": "true",
            # Its awaiter waits for Bound on a new claim, or for Pending under a
            # WaitForFirstConsumer StorageClass: this claim is Bound already, so the await would
            # never end there.
            "pulumi.com/skipAwait": "true",
        },
    )
    spec = k8s.core.v1.PersistentVolumeClaimSpecPatchArgs(
        resources=k8s.core.v1.VolumeResourceRequirementsPatchArgs(requests={"storage": mebibytes(size_bytes)})
    )
    return metadata, spec
