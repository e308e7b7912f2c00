"""Tar archives of model dirs (pure Python ``tarfile``): the safe extraction of a training job's
``model.tar.gz`` and the deterministic tar.gz of a SavedModel that convert stores in the registry."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from modelops.domain.errors import ArtifactInvalidError


def safe_extract(archive: Path, dest: Path, *, max_bytes: int, max_members: int) -> Path:
    """Extract a (gzipped) tar after checking every member: regular files and folders only (no links,
    devices or FIFOs), relative paths without ``..``, at most ``max_members`` entries and
    ``max_bytes`` in all. Anything else, or a truncated archive: :class:`ArtifactInvalidError`."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:
                path = PurePosixPath(member.name)
                if member.name.startswith(("/", "\\")) or ".." in path.parts or "\\" in member.name:
                    raise ArtifactInvalidError(f"unsafe path in the training artifact: {member.name[:200]!r}")
                if member.issym() or member.islnk():
                    raise ArtifactInvalidError(
                        f"the training artifact contains a link: {member.name[:200]!r}"
                    )
                if not (member.isfile() or member.isdir()):
                    raise ArtifactInvalidError(
                        f"the training artifact contains a special file: {member.name[:200]!r}"
                    )
                total += member.size
                members.append(member)
                if len(members) > max_members:
                    raise ArtifactInvalidError(f"the training artifact has more than {max_members} entries")
                if total > max_bytes:
                    raise ArtifactInvalidError(
                        f"the training artifact unpacks to more than {max_bytes} bytes"
                    )
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArtifactInvalidError(f"the training artifact is truncated or not a tar.gz: {exc}") from exc
    return dest


def deterministic_targz(folder: Path, arcroot: str) -> bytes:
    """``folder`` as a tar.gz whose bytes depend only on the files (sorted, zero times and owners), so a
    re-conversion of the same SavedModel yields the same blob digest."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in [folder, *sorted(folder.rglob("*"))]:
                rel = path.relative_to(folder).as_posix()
                name = arcroot if rel == "." else f"{arcroot}/{rel}"
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif path.is_file():
                    info.size, info.mode = path.stat().st_size, 0o644
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
    return buf.getvalue()
