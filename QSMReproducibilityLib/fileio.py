"""Atomic file output: a reader never sees half a file, and a killed writer leaves debris that can be swept.

Every file the library writes for a user or into a study goes through :func:`atomic_output`: a temporary file
in the destination folder (same file system, so the rename is atomic), fsync, rename, fsync of the folder.
Temporary names carry the writer's host and process ID (:func:`temp_file_owner`), so a sweeper can tell
debris of a process that no longer runs (:func:`is_stale_temp_file`) from a write in progress.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Mapping

__all__ = ["atomic_output", "staging_folder", "publish_folder", "temp_name_prefix", "host_tag", "temp_file_owner",
           "is_stale_temp_file", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it onto ``path``.

    The temporary file lives in the destination folder (same file system, so ``os.replace`` is
    atomic) and is named ``.<name>.<host>.<pid>.<random>.tmp`` so that a sweeper can recognise
    debris left by a killed process. On any exception the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file readable by its owner only; give it the permissions of a normal
        # new file so that other accounts sharing the study folder can read it.
        os.chmod(tmp, 0o666 & ~_current_umask())
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def staging_folder(out: str | os.PathLike) -> Path:
    """Create an empty hidden folder ``.<name>.<random>.partial`` beside the folder ``out`` (and ``out``'s
    parent if needed), for :func:`publish_folder` to fill and move into place. Raises ``OSError``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.partial"
    staging.mkdir()
    return staging


def publish_folder(staging: str | os.PathLike, out: str | os.PathLike, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``staging`` (from :func:`staging_folder`), then move them into ``out``.

    A new ``out`` is the staging folder renamed in one step; into an existing folder each file is moved with
    ``os.replace`` (atomic per file), and its other files are left alone. Files get the usual permissions
    (the process umask applies). The staging folder is removed whether or not this succeeds; ``OSError``
    propagates.
    """
    staging, out = Path(staging), Path(out)
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if not out.exists():
            try:
                os.rename(staging, out)
                return
            except OSError:
                if not out.is_dir():
                    raise
        for name in files:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name_prefix(path: str | os.PathLike) -> str:
    """``.<name>.<host>.<pid>.``: the start of a temporary name for ``path`` that :func:`temp_file_owner` reads
    (for ``tempfile.mkstemp``/``mkdtemp`` with ``suffix=TEMP_SUFFIX`` in the destination folder)."""
    return f".{Path(path).name}.{host_tag()}.{os.getpid()}."


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits and hyphens)."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40] or "host"


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), where it is skipped.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_file_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(host, pid)`` encoded in a temporary name made by :func:`atomic_output`, else ``None``."""
    name = Path(path).name
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[: -len(TEMP_SUFFIX)].split(".")
    # ['', <name parts...>, host, pid, random]
    if len(parts) < 5 or not parts[-2].isdigit():
        return None
    return parts[-3], int(parts[-2])


def is_stale_temp_file(path: str | os.PathLike) -> bool:
    """True for a temporary file of :func:`atomic_output` whose writing process no longer runs here."""
    owner = temp_file_owner(path)
    if owner is None:
        return False
    if os.name == "nt":
        # No safe liveness probe there (os.kill(pid, 0) sends CTRL_C_EVENT): wait a day instead.
        with contextlib.suppress(OSError):
            return time.time() - os.path.getmtime(path) > 86400
        return False
    host, pid = owner
    if host != host_tag():
        return False  # another machine's process: cannot tell, leave it
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False
