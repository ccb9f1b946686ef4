"""The model registry: `MODELS_DIR/<name>/<version>/manifest.json`, integer versions, newest serves.

Reading side only: the training package's export step is the one writer (see `training.publish`).
Folders whose name is not a valid model name (such as `.staging`) are never served.

The registry is sealed: a version folder, manifest or listed file that resolves outside MODELS_DIR
(a symlink out of it) is refused unless `allow_symlinks`; each reload compares the size and mtime
of every listed file with what was loaded and re-hashes a version whose files changed, so a
truncated or replaced artifact marks its version failed while older good versions serve. Messages
to clients name the model, version and file, never a server path.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from latentserve_core.layout import model_names, read_manifest, versions_of
from latentserve_core.manifest import MANIFEST_FILE, Manifest
from latentserve_core.runtime import RUNTIMES, ModelRuntime
from service.errors import (
    IntegrityError,
    LatentServeError,
    ModelNotFound,
    ModelUnavailable,
    RegistryError,
)

log = logging.getLogger("latentserve.registry")


Fingerprint = dict[str, tuple[int, int]]  # file name -> (size, mtime_ns); (-1, -1) when missing


def fingerprint(folder: Path, manifest: Manifest | None) -> Fingerprint:
    """Size and mtime of the manifest and of every file it lists: what a reload compares."""
    names = [MANIFEST_FILE, *(f.path for f in manifest.files)] if manifest is not None else [MANIFEST_FILE]
    out: Fingerprint = {}
    for name in names:
        try:
            st = os.stat(folder / name)
            out[name] = (st.st_size, st.st_mtime_ns)
        except OSError:
            out[name] = (-1, -1)
    return out


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"/:]+/)*[^\s'\"/:]+")


def public_message(text: str, roots: list[str]) -> str:
    """`text` without server paths: a path under a registry root keeps its registry-relative part
    (`digits-pca/7/encoder.onnx`), any other absolute path becomes `<path>`."""
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "").replace(root, "MODELS_DIR")
    return _ABSOLUTE_PATH.sub("<path>", text)


@dataclass
class VersionRecord:
    """One version as the service sees it: its manifest, its runtime or why it failed to load."""

    name: str
    version: int
    folder: Path
    mtime_ns: int
    manifest: Manifest | None = None
    runtime: ModelRuntime | None = None
    error: str | None = None
    files: Fingerprint = field(default_factory=dict)  # as they were when this record was loaded

    @property
    def status(self) -> str:
        return "ready" if self.runtime is not None else "failed"


@dataclass
class _Snapshot:
    models: dict[str, dict[int, VersionRecord]] = field(default_factory=dict)
    # name -> the newest version that loaded (None: none did), worked out once per reload
    latest: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, models: dict[str, dict[int, VersionRecord]]) -> _Snapshot:
        latest = {
            name: max((v for v, r in versions.items() if r.runtime is not None), default=None)
            for name, versions in models.items()
        }
        return cls(models, latest)


class Registry:
    """Loads every version under `models_dir`; `reload()` picks up new ones without a restart.

    Each reload builds a new snapshot and swaps it in one assignment: a request that already holds
    a runtime finishes on it, and every response names the version that produced it.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        allow_pickle: bool = False,
        trusted_models: frozenset[str] = frozenset(),
        threads: int = 1,
        allow_symlinks: bool = False,
    ) -> None:
        self.models_dir = models_dir
        self.allow_symlinks = allow_symlinks
        self.allow_pickle = allow_pickle
        self.trusted_models = trusted_models
        self.threads = threads
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self.loaded = False
        self.load_failures_total = 0

    # ---- loading ----------------------------------------------------------------------------
    def reload(self) -> dict[str, list[int]]:
        """Rescan the registry; return the versions that appeared or changed since the last scan
        (a new manifest, or a listed file whose size or mtime moved: it is re-hashed)."""
        with self._lock:
            old = self._snapshot.models
            new: dict[str, dict[int, VersionRecord]] = {}
            added: dict[str, list[int]] = {}
            for name in model_names(self.models_dir):
                for version in versions_of(self.models_dir, name):
                    folder = self.models_dir / name / str(version)
                    try:
                        mtime = (folder / MANIFEST_FILE).stat().st_mtime_ns
                    except FileNotFoundError:  # removed while we scanned
                        continue
                    prev = old.get(name, {}).get(version)
                    if (
                        prev is not None
                        and prev.mtime_ns == mtime
                        and prev.files == fingerprint(folder, prev.manifest)
                    ):
                        record = prev
                    else:
                        record = self._load(name, version, folder, mtime)
                        added.setdefault(name, []).append(version)
                    new.setdefault(name, {})[version] = record
            self._snapshot = _Snapshot.of(new)
            self.loaded = True
            return added

    def _load(self, name: str, version: int, folder: Path, mtime: int) -> VersionRecord:
        record = VersionRecord(name, version, folder, mtime)
        try:
            self._check_sealed(name, version, folder, None)
            record.manifest = read_manifest(self.models_dir, name, version)
            # taken before hashing: a file that changes after this is caught by the next reload
            record.files = fingerprint(folder, record.manifest)
            self._check_sealed(name, version, folder, record.manifest)
            record.runtime = self._runtime_for(record.manifest, folder)
            log.info(
                "loaded %s version %d (%s, %s)", name, version, record.manifest.kind, record.runtime.format
            )
        except Exception as exc:
            if isinstance(exc, LatentServeError):
                message = exc.message
            else:  # a bug or an I/O error we did not foresee: this version fails, the others load
                message = RegistryError(
                    f"did not load ({type(exc).__name__})", model=name, version=version
                ).message
            record.runtime = None
            if not record.files:  # failed before its files were taken: the next poll compares
                record.files = fingerprint(folder, record.manifest)  # these, not re-read (and logged)
            record.error = public_message(message, self._roots())
            self.load_failures_total += 1
            log.error("could not load %s version %d: %s", name, version, message)
        return record

    def _roots(self) -> list[str]:
        return sorted({str(self.models_dir), str(self.models_dir.absolute()), str(self.models_dir.resolve())})

    def _check_sealed(self, name: str, version: int, folder: Path, manifest: Manifest | None) -> None:
        """Refuse a version folder (manifest None) or a listed file (of `manifest`) that resolves
        outside MODELS_DIR, unless allow_symlinks."""
        if self.allow_symlinks:
            return
        root = self.models_dir.resolve()
        if manifest is None:
            paths = {"the version folder": folder, MANIFEST_FILE: folder / MANIFEST_FILE}
        else:
            paths = {f.path: folder / f.path for f in manifest.files}
        for what, path in paths.items():
            if not path.resolve().is_relative_to(root):
                raise IntegrityError(
                    f"{what} is a link that leads out of the registry; "
                    "refusing it (LATENTSERVE_ALLOW_SYMLINKS=true allows links out of MODELS_DIR)",
                    field="files",
                    model=name,
                    version=version,
                )

    def _runtime_for(self, manifest: Manifest, folder: Path) -> ModelRuntime:
        order = manifest.serving_order
        for fmt in order:
            if fmt == "joblib" and not self._pickle_allowed(manifest.name):
                if len(order) > 1:
                    continue
                raise ModelUnavailable(
                    "a joblib (pickle) artifact; set LATENTSERVE_ALLOW_PICKLE=true or list the model "
                    "in LATENTSERVE_TRUSTED_MODELS to load it",
                    model=manifest.name,
                    version=manifest.version,
                )
            return RUNTIMES[fmt].load(manifest, folder, threads=self.threads)
        raise RegistryError("no servable format", model=manifest.name, version=manifest.version)

    def _pickle_allowed(self, name: str) -> bool:
        return self.allow_pickle or name in self.trusted_models

    # ---- lookup -----------------------------------------------------------------------------
    def records(self) -> dict[str, dict[int, VersionRecord]]:
        return self._snapshot.models

    def latest(self, name: str) -> int | None:
        """The newest version of `name` that loaded, or None (unknown name or none loaded)."""
        return self._snapshot.latest.get(name)

    def versions(self, name: str) -> dict[int, VersionRecord]:
        models = self._snapshot.models
        if name not in models:
            raise ModelNotFound(
                f"model {name!r} not found; available models: {sorted(models) or 'none'}",
                field="model",
                details={"available": sorted(models)},
            )
        return models[name]

    def record(self, name: str, version: int) -> VersionRecord:
        """The record of `name` at `version`, loaded or failed; ModelNotFound lists what exists."""
        return _record(self.versions(name), name, version)

    def get(self, name: str, version: int | None = None) -> ModelRuntime:
        """Return the runtime of `name` at `version` (default: the newest that loaded)."""
        snapshot = self._snapshot  # one snapshot for the whole lookup, even if a reload swaps it
        versions = snapshot.models.get(name)
        if versions is None:
            versions = self.versions(name)  # raises ModelNotFound listing what exists
        if version is None:
            latest = snapshot.latest.get(name)
            if latest is None:
                newest = versions[max(versions)]
                raise ModelUnavailable(
                    f"no version loaded; version {newest.version} failed: {newest.error}",
                    field="model",
                    model=name,
                )
            runtime = versions[latest].runtime
            assert runtime is not None
            return runtime
        record = _record(versions, name, version)
        if record.runtime is None:
            raise ModelUnavailable(
                f"failed to load: {record.error}", field="version", model=name, version=version
            )
        return record.runtime


def _record(versions: dict[int, VersionRecord], name: str, version: int) -> VersionRecord:
    record = versions.get(version)
    if record is None:
        raise ModelNotFound(
            f"model {name!r} has no version {version}; available versions: {sorted(versions)}",
            field="version",
            details={"available": sorted(versions)},
        )
    return record
