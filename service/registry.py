"""The model registry: `MODELS_DIR/<name>/<version>/manifest.json`, integer versions, newest serves.

Reading side only: the training package's export step is the one writer (see `training.publish`).
Folders whose name is not a valid model name (such as `.staging`) are never served.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from service.errors import InvalidInput, LatentServeError, ModelNotFound, ModelUnavailable, RegistryError
from service.manifest import MANIFEST_FILE, Manifest, is_valid_name
from service.runtime import RUNTIMES, ModelRuntime

log = logging.getLogger("latentserve.registry")


def model_names(models_dir: Path) -> list[str]:
    """Names of the model folders in the registry, sorted."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and is_valid_name(p.name))


def versions_of(models_dir: Path, name: str) -> list[int]:
    """Published versions of `name` (folders with an integer name and a manifest), ascending."""
    folder = models_dir / name
    if not is_valid_name(name) or not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if p.is_dir() and p.name.isdigit() and not p.name.startswith("0") and (p / MANIFEST_FILE).is_file():
            out.append(int(p.name))
    return sorted(out)


def check_name(name: str, field: str = "model") -> str:
    if not is_valid_name(name):
        raise InvalidInput(
            f"{field}: {name!r} is not a model name; expected 1-64 characters of a-z, 0-9, '.', '_', '-' "
            "starting with a letter or digit",
            field=field,
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Parse `NAME` or `NAME:VERSION`."""
    name, _, version = ref.partition(":")
    check_name(name, "name")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInput(f"version: expected a positive integer, got {version!r}", field="version")
    return name, int(version)


def read_manifest(models_dir: Path, name: str, version: int) -> Manifest:
    """Read and validate one version's manifest, checking it names its own folder."""
    folder = models_dir / name / str(version)
    try:
        manifest = Manifest.read(folder)
    except (OSError, ValidationError, ValueError) as exc:
        raise RegistryError(f"model {name!r} version {version}: unreadable manifest: {exc}") from exc
    if manifest.name != name or manifest.version != version:
        raise RegistryError(
            f"model {name!r} version {version}: the manifest says {manifest.name!r} version "
            f"{manifest.version}; refusing a folder that does not describe itself"
        )
    return manifest


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
        preferred_format: str = "onnx",
    ) -> None:
        self.models_dir = models_dir
        self.allow_pickle = allow_pickle
        self.trusted_models = trusted_models
        self.threads = threads
        self.preferred_format = preferred_format
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self.loaded = False
        self.load_failures_total = 0

    # ---- loading ----------------------------------------------------------------------------
    def reload(self) -> dict[str, list[int]]:
        """Rescan the registry; return the versions that appeared since the last scan."""
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
                    if prev is not None and prev.mtime_ns == mtime:
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
            record.manifest = read_manifest(self.models_dir, name, version)
            record.runtime = self._runtime_for(record.manifest, folder)
            log.info(
                "loaded %s version %d (%s, %s)", name, version, record.manifest.kind, record.runtime.format
            )
        except LatentServeError as exc:
            record.error = exc.message
            self.load_failures_total += 1
            log.error("could not load %s version %d: %s", name, version, exc.message)
        return record

    def _runtime_for(self, manifest: Manifest, folder: Path) -> ModelRuntime:
        # the preferred format first (ONNX needs no trust), then the manifest's own
        order = sorted(manifest.formats, key=lambda f: (f != self.preferred_format, f != manifest.format))
        for fmt in order:
            if fmt == "joblib" and not self._pickle_allowed(manifest.name):
                if len(order) > 1:
                    continue
                raise ModelUnavailable(
                    f"model {manifest.name!r} version {manifest.version} is a joblib (pickle) artifact; "
                    "set LATENTSERVE_ALLOW_PICKLE=true or list the model in LATENTSERVE_TRUSTED_MODELS "
                    "to load it"
                )
            return RUNTIMES[fmt].load(manifest, folder, threads=self.threads)
        raise RegistryError(f"model {manifest.name!r} version {manifest.version}: no servable format")

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
                    f"model {name!r}: no version loaded; version {newest.version} failed: {newest.error}",
                    field="model",
                )
            runtime = versions[latest].runtime
            assert runtime is not None
            return runtime
        record = versions.get(version)
        if record is None:
            raise ModelNotFound(
                f"model {name!r} has no version {version}; available versions: {sorted(versions)}",
                field="version",
                details={"available": sorted(versions)},
            )
        if record.runtime is None:
            raise ModelUnavailable(
                f"model {name!r} version {version} failed to load: {record.error}", field="version"
            )
        return record.runtime
