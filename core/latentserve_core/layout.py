"""The registry folder: `<models>/<name>/<version>/manifest.json`, integer versions, newest last.

Folders whose name is not a valid model name (such as `.staging`) are never versions. The service's
registry, `training` and the Spark scorer read versions through these functions.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from latentserve_core.errors import InvalidInput, RegistryError
from latentserve_core.manifest import MANIFEST_FILE, Manifest, is_valid_name


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
        number = p.name.isascii() and p.name.isdigit() and not p.name.startswith("0")  # not '²'
        if number and p.is_dir() and (p / MANIFEST_FILE).is_file():
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
    return name, parse_version(version)


def parse_version(version: str | None) -> int | None:
    """A version as written (a CLI ref, a URL): a positive integer in ASCII digits; None or "" for
    the newest."""
    if not version:
        return None
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise InvalidInput(f"version: expected a positive integer, got {version!r}", field="version")
    return int(version)


def read_manifest(models_dir: Path, name: str, version: int) -> Manifest:
    """Read and validate one version's manifest, checking it names its own folder."""
    folder = models_dir / name / str(version)
    try:
        manifest = Manifest.read(folder)
    except OSError as exc:  # str(exc) names the server path: keep only the reason
        reason = exc.strerror or type(exc).__name__
        raise RegistryError(f"unreadable manifest: {reason}", model=name, version=version) from exc
    except (ValidationError, ValueError) as exc:
        raise RegistryError(f"unreadable manifest: {exc}", model=name, version=version) from exc
    if manifest.name != name or manifest.version != version:
        raise RegistryError(
            f"the manifest says {manifest.name!r} version {manifest.version}; refusing a folder that "
            "does not describe itself",
            model=name,
            version=version,
        )
    return manifest
