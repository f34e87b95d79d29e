"""Volumes as the kubelet lays them out on a node: projected Secret/ConfigMap files, emptyDirs and
claim directories, with the pod's fsGroup applied (kubelet pkg/volume/volume_linux.go)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PodStartError
from .objects import ObjectStore, as_int
from .podspec import KUBE_ROOT_CA, VolumePlan

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


def projected_files(volume: VolumePlan, store: ObjectStore, namespace: str) -> dict[str, tuple[bytes, int]] | None:
    """path -> (content, mode) of a secret or configMap volume; None for a missing optional source."""
    src = volume.source
    kind, name = ("Secret", src["secretName"]) if volume.kind == "secret" else ("ConfigMap", src["name"])
    default_mode = as_int(src.get("defaultMode", 0o644), f"volume {volume.name} defaultMode")
    data = store.source_data(kind, namespace, name)
    if data is None:
        if src.get("optional"):
            return None
        issuer = next(
            (
                c["metadata"]["name"]
                for c in store.of_kind("Certificate", namespace)
                if (c.get("spec") or {}).get("secretName") == name
            ),
            None,
        )
        hint = f"; cert-manager would issue it from Certificate {issuer!r}: not emulated" if issuer else ""
        raise PodStartError(
            f'volume {volume.name!r}: {kind.lower()} "{name}" not found (pod stays ContainerCreating){hint}'
        )
    items = src.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if src.get("optional"):
                continue
            raise PodStartError(f"volume {volume.name!r}: key {item['key']!r} not found in {kind} {name!r}")
        mode = as_int(item["mode"], f"volume {volume.name} item mode") if item.get("mode") is not None else default_mode
        files[item["path"]] = (data[item["key"]], mode)
    return files


@dataclass(frozen=True)
class Projection:
    """What a projected volume's non-object sources need: the pod's token for the API server (None:
    no API server for this pod), the region's CA (kube-root-ca.crt) and the pod's metadata fields."""

    token: str | None
    ca: bytes
    fields: Mapping[str, str]
    fs_user: int | None = None
    fs_group: int | None = None
    owners: dict[str, int] = field(default_factory=dict)
    """Filled by projected_volume_files: path -> owner uid (the token file, when FsUser is known)."""


def projected_volume_files(
    volume: VolumePlan, store: ObjectStore, namespace: str, ctx: Projection
) -> dict[str, tuple[bytes, int]]:
    """The files of a ``projected`` volume, as pkg/volume/projected collectData builds them: every
    source's payload merged (later sources win a path). The token file's mode is 0600 when the pod
    has an FsUser or fsGroup (SetVolumeOwnership then adds g+r: 0640), else defaultMode."""
    src = volume.source
    default_mode = as_int(src.get("defaultMode", 0o644), f"volume {volume.name} defaultMode")
    files: dict[str, tuple[bytes, int]] = {}
    for source in src.get("sources") or []:
        if source.get("serviceAccountToken") is not None:
            if ctx.token is None:
                raise PodStartError(f"volume {volume.name!r}: no token (the pod's region has no API server)")
            mode = 0o600 if ctx.fs_user is not None or ctx.fs_group is not None else default_mode
            path = source["serviceAccountToken"]["path"]
            files[path] = (ctx.token.encode(), mode)
            if ctx.fs_user is not None:
                ctx.owners[path] = ctx.fs_user
        elif source.get("downwardAPI") is not None:
            for item in source["downwardAPI"].get("items") or []:
                mode = as_int(item["mode"], "downwardAPI mode") if item.get("mode") is not None else default_mode
                files[item["path"]] = (ctx.fields[item["fieldRef"]["fieldPath"]].encode(), mode)
        else:
            kind = "configMap" if source.get("configMap") is not None else "secret"
            ref = source[kind]
            if kind == "configMap" and ref["name"] == KUBE_ROOT_CA:
                data: dict[str, bytes] | None = {"ca.crt": ctx.ca}
            else:
                data = store.source_data("ConfigMap" if kind == "configMap" else "Secret", namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise PodStartError(f'volume {volume.name!r}: {kind.lower()} "{ref["name"]}" not found')
            items = ref.get("items")
            if not items:
                files.update({key: (value, default_mode) for key, value in data.items()})
                continue
            for item in items:
                if item["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise PodStartError(f"volume {volume.name!r}: key {item['key']!r} not found in {ref['name']!r}")
                mode = as_int(item["mode"], "item mode") if item.get("mode") is not None else default_mode
                files[item["path"]] = (data[item["key"]], mode)
    return files


DATA_DIR_NAME = "..data"
DATA_DIR_TMP_NAME = "..data_tmp"


def _write_payload(root: Path, files: Mapping[str, tuple[bytes, int]], owners: Mapping[str, int] | None = None) -> Path:
    """A new timestamped dir (``..YYYY_MM_DD_HH_MM_SS.<random>``, as the kubelet's os.MkdirTemp) with the files."""
    stamp = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()), dir=root))
    stamp.chmod(0o755)
    for rel, (content, mode) in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
        if owners and rel in owners:
            os.chown(target, owners[rel], -1)  # the AtomicWriter's FsUser
    return stamp


def _top_level(paths: Iterable[str]) -> set[str]:
    return {rel.split("/", 1)[0] for rel in paths}


def write_projected(
    root: Path, files: Mapping[str, tuple[bytes, int]], fs_group: int | None, owners: Mapping[str, int] | None = None
) -> None:
    """The kubelet's AtomicWriter layout: files in a timestamped dir, ``..data`` pointing at it, and one
    symlink per top-level name through ``..data``. Owned by root (or ``owners``); fsGroup as group, g+r added."""
    root.mkdir(parents=True)
    root.chmod(0o1777)  # the tmpfs the kubelet mounts for the volume
    stamp = _write_payload(root, files, owners)
    (root / DATA_DIR_NAME).symlink_to(stamp.name)
    for top in sorted(_top_level(files)):
        (root / top).symlink_to(f"{DATA_DIR_NAME}/{top}")
    if fs_group is not None:
        set_volume_ownership(root, fs_group, read_only=True)


def _current_payload(data_dir: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, filenames in os.walk(data_dir):
        for name in filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(data_dir))] = path.read_bytes()
    return out


def update_projected(root: Path, files: Mapping[str, tuple[bytes, int]], fs_group: int | None) -> bool:
    """Swap a written volume to new files as the kubelet's AtomicWriter.Write does; False (nothing
    touched) when no file's content changed and none was added or removed (it compares contents only).

    Order: new timestamped dir with the payload and fsGroup applied; ``..data_tmp`` symlink to it,
    renamed onto ``..data`` (the atomic switch: a reader sees either all old or all new files);
    symlinks for new top-level names; symlinks of removed names deleted; the old dir deleted."""
    data = root / DATA_DIR_NAME
    old_dir = root / os.readlink(data)
    current = _current_payload(old_dir)
    if current.keys() == files.keys() and all(current[rel] == content for rel, (content, _) in files.items()):
        return False
    stamp = _write_payload(root, files)
    if fs_group is not None:
        set_volume_ownership(stamp, fs_group, read_only=True)
    tmp = root / DATA_DIR_TMP_NAME
    tmp.symlink_to(stamp.name)
    if fs_group is not None:
        os.lchown(tmp, -1, fs_group)
    os.rename(tmp, data)
    old_tops, new_tops = _top_level(current), _top_level(files)
    for top in sorted(new_tops - old_tops):
        (root / top).symlink_to(f"{DATA_DIR_NAME}/{top}")
        if fs_group is not None:
            os.lchown(root / top, -1, fs_group)
    for top in sorted(old_tops - new_tops):
        (root / top).unlink()
    shutil.rmtree(old_dir)
    return True


def prepare_empty_dir(root: Path, fs_group: int | None) -> None:
    root.mkdir(parents=True)
    root.chmod(0o777)
    if fs_group is not None:
        set_volume_ownership(root, fs_group, read_only=False)


def prepare_claim(root: Path, fs_group: int | None, policy: str) -> None:
    """A claim's directory. A new one looks like a freshly formatted volume's root (root:root 0755),
    so a pod without a suitable fsGroup cannot write to it, as on a real cluster."""
    if not root.exists():
        root.mkdir(parents=True)
        root.chmod(0o755)
    if fs_group is not None and (policy != "OnRootMismatch" or requires_permission_change(root, fs_group, False)):
        set_volume_ownership(root, fs_group, read_only=False)


def requires_permission_change(root: Path, fs_group: int, read_only: bool) -> bool:
    st = root.lstat()
    if st.st_gid != fs_group or not stat.S_ISDIR(st.st_mode):
        return True
    wanted = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return (st.st_mode & wanted) != wanted or not st.st_mode & stat.S_ISGID


def set_volume_ownership(root: Path, fs_group: int, read_only: bool) -> None:
    """Group fsGroup on everything, g+rw (g+r read-only) on files, plus setgid and g+x on directories;
    symlinks are re-grouped but never chmod-ed (the kubelet's changeFilePermission)."""
    mask = RO_MASK if read_only else RW_MASK
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into symlinked dirs
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for path in [dirpath, *(os.path.join(dirpath, n) for n in [*links, *filenames])]:
            st = os.lstat(path)
            os.lchown(path, -1, fs_group)
            if stat.S_ISLNK(st.st_mode):
                continue
            extra = mask | stat.S_ISGID | EXEC_MASK if stat.S_ISDIR(st.st_mode) else mask
            os.chmod(path, stat.S_IMODE(st.st_mode) | extra)


def sub_path_source(volume_root: Path, sub_path: str, create: bool) -> Path:
    """The host path a subPath mount binds, kept inside the volume. emptyDir and claim volumes get a
    missing subPath created as a directory with the volume root's mode (the kubelet's SafeMakeDir)."""
    root = volume_root.resolve()
    source = (volume_root / sub_path).resolve()
    if source != root and root not in source.parents:
        raise PodStartError(f"subPath {sub_path!r} escapes its volume")
    if not source.exists():
        if not create:
            raise PodStartError(f"subPath {sub_path!r} does not exist in its volume")
        mode = stat.S_IMODE(root.stat().st_mode)
        source.mkdir(parents=True)
        source.chmod(mode)
    return source
