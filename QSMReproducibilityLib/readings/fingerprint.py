"""Checksums of the store's files and the fingerprint that refers to a case's GRE without naming the patient."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import InputError

__all__ = ["sha256_file", "gre_fingerprint"]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gre_fingerprint(path) -> str:
    """A reference to the GRE input of a case that does not reveal who the patient is.

    SHA-256 over the sorted SHA-256 digests of every file of ``path`` (a file, or a folder searched
    recursively; hidden files are skipped). File names and locations do not enter, so the
    fingerprint identifies the same files wherever they are copied, and neither a patient name in
    a folder name nor a DICOM header is stored.

    Returns
    -------
    str
        ``"sha256:<64 hex digits> (<n> files)"``.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [p for p in sorted(path.rglob("*"))
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    else:
        raise InputError(f"GRE input {path} does not exist")
    if not files:
        raise InputError(f"GRE input {path} holds no files")
    digests = sorted(sha256_file(f) for f in files)
    combined = hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()
    return f"sha256:{combined} ({len(files)} file{'s' if len(files) != 1 else ''})"
