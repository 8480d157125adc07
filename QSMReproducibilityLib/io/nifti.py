"""NIfTI volumes in and out: a 3-D volume, a GRE series given as NIfTI files, atomic writes.

Explicit NIfTI GRE input is one 4-D file or one 3-D file per echo for each of magnitude and phase, with
echo times given separately. ``.nii.gz`` output is compressed on all cores (:func:`write_gzip`).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..fileio import atomic_output
from .series import (PHASE_UNITS, GreSeries, apply_phase_scaling, assumed_b0, check_b0, phase_scaling,
                     validate_gre)


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from None
    return data, img.affine


def _stack_echoes(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Echoes of one or more NIfTI files stacked as (X, Y, Z, E) float32, filled in place."""
    from concurrent.futures import ThreadPoolExecutor

    headers = []
    for p in paths:
        try:
            img = nib.load(str(p))
        except FileNotFoundError:
            raise InputError(f"{p}: file not found") from None
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise InputError(f"{p}: not a readable NIfTI file ({exc})") from None
        if len(img.shape) not in (3, 4):
            raise InputError(f"{p}: expected a 3-D or 4-D volume, got {len(img.shape)} dimensions")
        if headers and (img.shape[:3] != headers[0][1].shape[:3] or not np.allclose(img.affine, headers[0][1].affine, atol=1e-3)):
            raise InputError(f"{p}: its grid differs from {paths[0].name}")
        headers.append((p, img))
    counts = [img.shape[3] if len(img.shape) == 4 else 1 for _, img in headers]
    # Echo-first in memory, exposed as (X, Y, Z, E): every echo is one contiguous volume.
    out = np.empty((sum(counts),) + tuple(headers[0][1].shape[:3]), np.float32)
    starts = np.cumsum([0] + counts[:-1])

    def fill(item):
        (p, img), start, count = item
        try:
            data = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:
            raise InputError(f"{p}: the image data cannot be read ({exc})") from None
        out[start:start + count] = np.moveaxis(data.reshape(data.shape[:3] + (count,)), -1, 0)

    # Decompression and copying release the GIL: read the echoes' files in parallel.
    with ThreadPoolExecutor(max_workers=min(len(headers), os.cpu_count() or 1)) as pool:
        list(pool.map(fill, zip(headers, starts, counts)))
    return np.moveaxis(out, 0, -1), headers[0][1].affine


def load_nifti_gre(magnitude_paths, phase_paths, te_s, b0_tesla: float | None = None, *,
                   phase_units: str = "auto") -> GreSeries:
    """Explicit NIfTI input: one 4-D file or one 3-D file per echo for each of magnitude and phase.

    ``b0_tesla`` defaults to 3 T with a warning; ``phase_units`` is one of :data:`PHASE_UNITS` (see
    :func:`phase_scaling`), decided once for all echoes.
    """
    mag_paths = [Path(p) for p in magnitude_paths]
    pha_paths = [Path(p) for p in phase_paths]
    if not mag_paths or not pha_paths:
        raise InputError("give both the magnitude and the phase NIfTI files")
    b0 = None if b0_tesla is None else check_b0(b0_tesla, "--b0")
    if phase_units not in PHASE_UNITS:
        raise InputError(f"unknown phase units {phase_units!r}; choose one of {', '.join(PHASE_UNITS)}")
    magnitude, aff_m = _stack_echoes(mag_paths)
    phase, aff_p = _stack_echoes(pha_paths)
    phase_name = str(pha_paths[0]) if len(pha_paths) == 1 else \
        f"{pha_paths[0]} (and {len(pha_paths) - 1} more phase files)"
    te = validate_gre(magnitude, phase, te_s, aff_m, aff_p, str(mag_paths[0]), phase_name)
    scaling = phase_scaling(phase, phase_name, phase_units)
    phase = apply_phase_scaling(phase, scaling, in_place=True)
    if b0 is None:  # warned only for data that are otherwise usable
        b0 = assumed_b0(str(mag_paths[0].parent))
    return GreSeries(magnitude, phase, te, b0, aff_m, source=str(mag_paths[0].parent), phase_scaling=scaling)



def check_output_path(path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, an output path that cannot be written: a folder, a wrong extension, or a
    location under a file or in a folder without write permission. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the {what} is an existing folder; give a file name")
    if suffixes and not path.name.lower().endswith(tuple(suffixes)):
        raise InputError(f"{path}: the {what} must end in {' or '.join(suffixes)}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{path}: the {what} cannot be written, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the {what} cannot be written, no permission to write in {parent}")
    return path


def save_nifti(path, data: np.ndarray, affine: np.ndarray, *, description: str = "") -> Path:
    """Write a NIfTI file atomically (:func:`~QSMReproducibilityLib.fileio.atomic_output`).

    ``.nii.gz`` is compressed on all cores (:func:`write_gzip`); any gzip reader opens it.
    """
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, float))
    img.header.set_xyzt_units("mm", "sec")
    if description:
        img.header["descrip"] = description[:79].encode()
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        if path.name.endswith(".nii.gz"):
            write_gzip(handle, img.to_bytes())
        else:
            handle.write(img.to_bytes())
    return path


def write_gzip(handle, data, *, level: int = 1, chunk_bytes: int = 2**22) -> None:
    """Write ``data`` to ``handle`` as one gzip member (RFC 1952), deflating chunks in parallel.

    Each chunk is an independent raw deflate stream ended by a sync flush (an empty stored block,
    RFC 1951 §3.2.4), so their concatenation is one valid deflate stream; the last chunk carries the
    final block. This is the layout pigz writes, without its dictionary priming (a slightly lower ratio).
    """
    import struct
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    view = memoryview(data).cast("B")
    starts = range(0, max(len(view), 1), chunk_bytes)
    last = len(starts) - 1

    def deflate(item):
        index, start = item
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = compressor.compress(view[start:start + chunk_bytes])
        return body + compressor.flush(zlib.Z_FINISH if index == last else zlib.Z_SYNC_FLUSH)

    with ThreadPoolExecutor(max_workers=max(1, min(len(starts), os.cpu_count() or 1))) as pool:
        parts = pool.map(deflate, enumerate(starts))
        handle.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # deflate, no name, no mtime, OS unknown
        for part in parts:
            handle.write(part)
    handle.write(struct.pack("<II", zlib.crc32(view), len(view) & 0xFFFFFFFF))


def load_volume(path) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D NIfTI volume as (float32 array indexed i, j, k; voxel→RAS affine)."""
    data, affine = _load_nifti(Path(path))
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return data, affine
