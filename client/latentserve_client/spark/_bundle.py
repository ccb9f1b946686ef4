"""A model version as it travels to Spark executors: its manifest and the bytes of its ONNX graphs
and reference codes, each checked against the manifest's sha256 where it is read and again where
it is loaded. One runtime per Python worker process, cached by the manifest's sha256."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from latentserve_core.errors import IntegrityError, InvalidInput, RegistryError
from latentserve_core.layout import parse_ref, read_manifest, versions_of
from latentserve_core.manifest import MANIFEST_FILE, SCORER_ROLES, FileEntry, Manifest
from latentserve_core.runtime import ModelRuntime, OnnxRuntime
from latentserve_core.runtime.base import verify_file


@dataclass(frozen=True)
class Bundle:
    """manifest and files (path -> bytes, each matching its manifest sha256): everything
    `OnnxRuntime.load` reads. `key` (the manifest's sha256) names it in each worker's cache."""

    manifest: Manifest
    files: dict[str, bytes]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", hashlib.sha256(self.manifest.to_json().encode()).hexdigest())

    @property
    def label(self) -> str:
        return f"model {self.manifest.name!r} version {self.manifest.version}"


def needed_files(manifest: Manifest) -> list[FileEntry]:
    """The ONNX graphs and reference codes of a version; a joblib-only kind is refused here."""
    if "onnx" not in manifest.formats:
        raise InvalidInput(
            f"a {manifest.kind} is served from joblib (a pickled scikit-learn object) only, and the Spark "
            "scorer runs ONNX graphs: refit it as one of the PCA family's ONNX kinds (pca, pca-full, "
            "pca-randomized, pca-incremental) or a network, or score it through the service "
            "(latentserve-score)",
            field="model",
            model=manifest.name,
            version=manifest.version,
        )
    return [f for f in manifest.files if f.role in SCORER_ROLES and f.format in ("onnx", "npy")]


def from_folder(folder: Path) -> Bundle:
    """The bundle of one version folder (`<models>/<name>/<version>`), sha256-checked."""
    if not (folder / MANIFEST_FILE).is_file():
        raise InvalidInput(f"model: {str(folder)!r} holds no {MANIFEST_FILE}", field="model")
    try:
        manifest = Manifest.read(folder)
    except ValueError as exc:
        raise RegistryError(f"model: unreadable manifest in {str(folder)!r}: {exc}", field="model") from exc
    files = {f.path: verify_file(folder, f, manifest).read_bytes() for f in needed_files(manifest)}
    return _checked(Bundle(manifest, files))


def from_registry(models_dir: Path, ref: str) -> Bundle:
    """`NAME` (its newest version) or `NAME:VERSION` in a registry folder."""
    name, version = parse_ref(ref)
    versions = versions_of(models_dir, name)
    if not versions or (version is not None and version not in versions):
        raise InvalidInput(
            f"model: {ref!r} is not in the registry {str(models_dir)!r} (versions of {name!r}: {versions})",
            field="model",
        )
    version = version or versions[-1]
    read_manifest(models_dir, name, version)  # checks that the folder describes itself
    return from_folder(models_dir / name / str(version))


def from_service(url: str, ref: str, *, api_key: str | None = None, timeout: float = 60.0) -> Bundle:
    """The bundle of `NAME[:VERSION]` on a running service: its manifest from /models/NAME, its files
    from /models/NAME/versions/V/artifacts/FILE, each checked against the manifest's sha256 here."""
    name, version = parse_ref(ref)
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as http:
        detail = _get(http, f"/models/{name}").json()
        if version is None:
            version = detail.get("latest")
        found = next((v for v in detail.get("versions", []) if v.get("version") == version), None)
        if found is None or found.get("manifest") is None:
            raise InvalidInput(
                f"model: {ref!r} has no loaded version {version} on {url} (latest: {detail.get('latest')})",
                field="model",
            )
        manifest = Manifest.model_validate(found["manifest"])
        files = {
            f.path: _get(http, f"/models/{name}/versions/{version}/artifacts/{f.path}").content
            for f in needed_files(manifest)
        }
    return _checked(Bundle(manifest, files))


def _get(http: httpx.Client, path: str) -> httpx.Response:
    response = http.get(path)
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise InvalidInput(f"model: GET {path} answered {response.status_code}: {message}", field="model")
    return response


def _checked(bundle: Bundle) -> Bundle:
    """Every file's bytes against its manifest sha256 (a download, or a read racing a writer)."""
    m = bundle.manifest
    for entry in needed_files(m):
        data = bundle.files.get(entry.path, b"")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(
                f"file {entry.path!r} does not match the sha256 in its manifest; refusing to score with it",
                field="files",
                model=m.name,
                version=m.version,
            )
    return bundle


_RUNTIMES: dict[str, ModelRuntime] = {}  # by Bundle.key: one runtime per Python worker process
_FOLDERS: list[tempfile.TemporaryDirectory[str]] = []  # kept for the worker's life
_LOCK = threading.Lock()


def runtime(bundle: Bundle) -> ModelRuntime:
    """This process's runtime for the bundle: its files written once to a private folder and loaded
    by the core (which checks their sha256 again), one onnxruntime session per graph, one thread."""
    with _LOCK:
        rt = _RUNTIMES.get(bundle.key)
        if rt is None:
            folder = tempfile.TemporaryDirectory(prefix="latentserve-")
            _FOLDERS.append(folder)
            for path, data in bundle.files.items():
                (Path(folder.name) / path).write_bytes(data)
            rt = _RUNTIMES[bundle.key] = OnnxRuntime.load(bundle.manifest, Path(folder.name), threads=1)
        return rt
