"""A version's files over HTTP: the pictures, model card and reports its manifest lists
(`read_artifact`), and, for scorers that run the model themselves (the Spark scorer in
`latentserve_client.spark`), its ONNX graphs and reference codes (`read_model_file`).

A file is found only by its name in the manifest (nothing else in the folder is reachable), read
whole (at most the size the manifest records), hashed, and sent only when its sha256 still matches:
the bytes that go out are the bytes that were checked. A mismatch is `ArtifactTampered` (409),
naming the version and the file, never the bytes. Without LATENTSERVE_ALLOW_SYMLINKS a file that
resolves outside its version folder is refused the same way.

The answer carries the sha256 as its ETag (a matching If-None-Match gets 304) and may be cached
privately: a published version's files never change.

Evaluation reports (`<version>/evaluations/`, written by `python -m training evaluate` after
publishing) are not in the manifest, so nothing pins them: `read_evaluation` serves only a regular
file (not a link) directly in that folder, by a plain name, PNG or JSON, at most
MAX_EVALUATION_BYTES, with the sha256 of what it read as the ETag.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.responses import Response

from latentserve_core.manifest import SCORER_ROLES, FileEntry, FileRole
from service.errors import ArtifactTampered, ModelNotFound, ModelUnavailable
from service.registry import Registry, VersionRecord

SERVED_ROLES: tuple[FileRole, ...] = ("picture", "card", "report")  # display files (read_artifact)
MEDIA_TYPES = {
    "png": "image/png",
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
    "onnx": "application/octet-stream",
    "npy": "application/octet-stream",
}
CACHE_CONTROL = "private, max-age=3600"
EVALUATIONS_DIR = "evaluations"  # where `training evaluate` writes its reports (not in the manifest)
MAX_EVALUATION_BYTES = 4 << 20  # a larger evaluation file is not served
_EVALUATION_KINDS: dict[str, tuple[FileRole, Literal["png", "json"]]] = {
    "png": ("picture", "png"),
    "json": ("report", "json"),
}
_EVALUATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.(png|json)")


@dataclass(frozen=True)
class Artifact:
    """One verified file: its manifest entry and its bytes."""

    entry: FileEntry
    data: bytes  # verified against entry.sha256 (an evaluation's entry is made from what was read)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.entry.format]

    @property
    def etag(self) -> str:
        return f'"{self.entry.sha256}"'


def served_files(record: VersionRecord) -> list[FileEntry]:
    """The files of this version that may be fetched over HTTP, in manifest order."""
    if record.manifest is None:
        return []
    return [f for f in record.manifest.files if f.role in SERVED_ROLES and f.format in MEDIA_TYPES]


def read_artifact(registry: Registry, name: str, version: int, file: str) -> Artifact:
    """Read and verify one listed display file of a version (failed versions' files included)."""
    return _read_listed(registry, name, version, file, served_files, "picture, card or report")


def model_files(record: VersionRecord) -> list[FileEntry]:
    """The ONNX graphs, reference codes and score terms' files of a version: what an offline scorer
    loads (SCORER_ROLES)."""
    if record.manifest is None:
        return []
    return [f for f in record.manifest.files if f.role in SCORER_ROLES and f.format in ("onnx", "npy")]


def read_model_file(registry: Registry, name: str, version: int, file: str) -> Artifact:
    """Read and verify one ONNX graph or reference file of a version, for an offline scorer (Spark)."""
    return _read_listed(registry, name, version, file, model_files, "ONNX graph or reference")


def _read_listed(
    registry: Registry,
    name: str,
    version: int,
    file: str,
    listed: Callable[[VersionRecord], list[FileEntry]],
    what: str,
) -> Artifact:
    """One of the files `listed` gives for the version, by name, verified."""
    record = _readable(registry, name, version)
    files = listed(record)
    entry = next((f for f in files if f.path == file), None)
    if entry is None:
        names = [f.path for f in files]
        raise ModelNotFound(
            f"model {name!r} version {version} lists no {what} {file!r}; files: {names}",
            field="file",
            details={"available": names},
        )
    return _verified(registry, record, entry)


def _readable(registry: Registry, name: str, version: int) -> VersionRecord:
    record = registry.record(name, version)
    if record.manifest is None:
        raise ModelUnavailable(
            f"model {name!r} version {version} has no readable manifest: {record.error}", field="version"
        )
    return record


def _verified(registry: Registry, record: VersionRecord, entry: FileEntry) -> Artifact:
    """The bytes of a listed file, read once and sent only if they match its sha256."""
    name, version, file = record.name, record.version, entry.path
    path = record.folder / entry.path
    folder = record.folder.resolve()
    if not registry.allow_symlinks and path.resolve().parent != folder:
        raise ArtifactTampered(name, version, file)
    data = _read_regular(path, entry.bytes + 1)  # never more than the manifest says, plus one to notice
    if data is None:
        raise ArtifactTampered(name, version, file)
    if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ArtifactTampered(name, version, file)
    return Artifact(entry, data)


def _read_regular(path: Path, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file; None for anything else (a FIFO, a device, a
    folder) or an error. Opened without blocking: a FIFO put in a file's place must not hold a
    worker thread until a writer comes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_evaluation(registry: Registry, name: str, version: int, file: str) -> Artifact:
    """Read one evaluation report file (PNG or JSON) of a version; not pinned by the manifest."""
    folder = registry.record(name, version).folder / EVALUATIONS_DIR
    match = _EVALUATION_NAME.fullmatch(file)
    missing = ModelNotFound(f"model {name!r} version {version} has no evaluation file {file!r}", field="file")
    if match is None:
        raise missing
    try:
        st = (folder / file).lstat()
    except OSError:
        raise missing from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_EVALUATION_BYTES:
        raise missing
    data = _read_regular(folder / file, MAX_EVALUATION_BYTES)  # swapped for a FIFO since: refused
    if data is None:
        raise missing
    role, fmt = _EVALUATION_KINDS[match[1]]
    entry = FileEntry(
        role=role, path=file, format=fmt, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)
    )
    return Artifact(entry, data)


def artifact_response(artifact: Artifact, if_none_match: str | None) -> Response:
    """200 with the bytes, or 304 when the client's If-None-Match already names this sha256."""
    headers = {
        "ETag": artifact.etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{artifact.entry.path}"',
    }
    tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    if artifact.etag in tags or "*" in tags:
        return Response(status_code=304, headers=headers)
    return Response(artifact.data, media_type=artifact.media_type, headers=headers)
