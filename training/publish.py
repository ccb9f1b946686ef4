"""The only writer of the registry: stage a version in a hidden folder, verify it, rename it in.

A version folder appears by one atomic `os.rename`, so readers never see a half-written version;
a crash or Ctrl-C mid-export leaves only a hidden `.staging/` folder, which readers ignore and the
next export sweeps. Two exports of the same name race on the rename: the loser retries with the
next version number, so versions are distinct and never mixed. A write that fails (a full disk,
a read-only or forbidden folder) raises `PublishError` after the staged folder, and any model folder
this export created, are removed: the registry is as it was.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from types import TracebackType

from latentserve_core.manifest import MANIFEST_FILE, FileEntry, Manifest, is_valid_name, sha256_of

log = logging.getLogger("latentserve.publish")
STAGING = ".staging"
STALE_AFTER_S = 24 * 3600


class RegistryNotWritable(PermissionError):  # noqa: N818 (named for the condition, like the service's errors)
    """This process cannot write the registry folder (a host folder mounted with another owner)."""

    def __init__(self, folder: Path) -> None:
        uid, gid = os.getuid(), os.getgid()
        st = folder.stat()
        super().__init__(
            f"cannot write the registry: {folder} belongs to uid {st.st_uid}:{st.st_gid} (mode "
            f"{st.st_mode & 0o777:o}) and this process runs as uid {uid}:{gid}; give it write access, "
            f"e.g. `chown -R {uid}:{gid}` on the folder (a host folder mounted at /models of the train "
            "image must belong to its user, uid 10001)"
        )


def check_writable(models_dir: Path) -> None:
    """Raise RegistryNotWritable unless this process can create versions under `models_dir` (or
    create `models_dir` itself); checked before training, so a long fit does not fail at the end."""
    if models_dir.exists():
        folders = [f for f in (models_dir, models_dir / STAGING) if f.exists()]
    else:
        folders = [next(p for p in models_dir.parents if p.exists())]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise RegistryNotWritable(folder)


class PublishError(Exception):
    """The registry could not be written (ENOSPC, EROFS, EACCES...); nothing was published."""

    def __init__(self, name: str, exc: OSError) -> None:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        super().__init__(
            f"could not publish {name!r}: {reason}{where}; nothing was published, the registry is unchanged"
        )


class Staging:
    """`with Staging(models_dir, name) as stage:` write files into `stage.path`, then `stage.publish(m)`."""

    def __init__(self, models_dir: Path, name: str) -> None:
        if not is_valid_name(name):
            raise ValueError(
                f"name {name!r} is not a valid model name: 1-64 characters of a-z, 0-9, '.', '_', '-', "
                "starting with a letter or digit"
            )
        self.models_dir = models_dir
        self.name = name
        self.path = models_dir / STAGING / f"{name}-{uuid.uuid4().hex}"
        self.published: Path | None = None
        self._created_model_folder = False  # models_dir / name did not exist before this export

    def __enter__(self) -> Staging:
        root = self.models_dir / STAGING
        try:
            root.mkdir(parents=True, exist_ok=True)
            _sweep_stale(root)
            self.path.mkdir()
        except OSError as exc:
            self._clean()
            raise PublishError(self.name, exc) from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.published is None:
            self._clean()
            if isinstance(exc, OSError):
                raise PublishError(self.name, exc) from exc

    def _clean(self) -> None:
        """Remove the staged folder, and the model folder if this export created it (when empty);
        the hidden `.staging/` stays for other exports, readers ignore it."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._created_model_folder:
            with contextlib.suppress(OSError):
                (self.models_dir / self.name).rmdir()

    def file_entry(self, role: str, filename: str, fmt: str) -> FileEntry:
        """Describe a file written into the staging folder (sha256 and size)."""
        path = self.path / filename
        return FileEntry.model_validate(
            {
                "role": role,
                "path": filename,
                "format": fmt,
                "sha256": sha256_of(path),
                "bytes": path.stat().st_size,
            }
        )

    def publish(self, manifest: Manifest) -> Path:
        """Give the staged folder the next free version and rename it into place; return its path."""
        target_parent = self.models_dir / self.name
        self._created_model_folder = not target_parent.exists()  # removed again if the rename fails
        target_parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            # every numbered folder counts, even one without a manifest: never reuse its number
            taken = {int(p.name) for p in target_parent.iterdir() if p.name.isascii() and p.name.isdigit()}
            version = max(taken, default=0) + 1
            final = manifest.model_copy(update={"version": version})
            tmp = self.path / (MANIFEST_FILE + ".tmp")
            tmp.write_text(final.to_json(), encoding="utf-8")
            os.replace(tmp, self.path / MANIFEST_FILE)
            target = target_parent / str(version)
            try:
                os.rename(self.path, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another export took this version first
                raise
            self.published = target
            log.info("published %s version %d at %s", self.name, version, target)
            return target
        raise RuntimeError(f"could not find a free version for {self.name!r} after 100 tries")


def _sweep_stale(staging_root: Path) -> None:
    now = time.time()
    for p in staging_root.iterdir():
        try:
            if now - p.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue
