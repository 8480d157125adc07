"""Reading multi-echo GRE and writing volumes.

Inputs: a BIDS ``anat`` folder with ``*_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` and JSON sidecars (as
dcm2niix and qsm-forward write it), explicit NIfTI (one 4-D file or one 3-D file per echo) with echo
times, or a DICOM folder (magnitude and phase series told apart by ImageType). Everything ends in a
:class:`GreSeries` whose arrays are indexed (i, j, k, echo) with a voxel→RAS affine in mm.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

SIEMENS_PHASE_RANGE = (-4096.0, 4095.0)
_BIDS_MAG = re.compile(r"^(?P<prefix>.+?)_echo-(?P<echo>\d+)_part-mag_(?P<suffix>.*MEGRE)\.nii(\.gz)?$")


@dataclass(frozen=True)
class GreSeries:
    """Multi-echo GRE data in physical units.

    magnitude, phase_rad : (X, Y, Z, E) float32; phase wrapped, in radians. Readers store each echo
        contiguously (the arrays are echo-first in memory), which the per-echo steps rely on for speed.
    te_s : (E,) echo times in seconds, strictly increasing.
    b0_tesla : main field strength in tesla.
    affine : 4×4 voxel→RAS matrix in mm.
    source : a short description of where the data came from (for messages and provenance).
    b0_dir_voxel : the B0 direction in the voxel frame when it is known explicitly (a ``B0_dir``
        sidecar entry, as qsm-forward writes, or ``--b0-dir``); otherwise it follows from the affine.
    """

    magnitude: np.ndarray
    phase_rad: np.ndarray
    te_s: np.ndarray
    b0_tesla: float
    affine: np.ndarray
    source: str = ""
    b0_dir_voxel: tuple[float, float, float] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.magnitude.shape[:3])

    @property
    def n_echoes(self) -> int:
        return int(self.magnitude.shape[3])

    @property
    def voxel_size_mm(self) -> np.ndarray:
        return voxel_size_from_affine(self.affine)

    @property
    def b0_dir(self) -> np.ndarray:
        if self.b0_dir_voxel is not None:
            direction = np.asarray(self.b0_dir_voxel, dtype=float)
            return direction / np.linalg.norm(direction)
        return b0_direction_voxel(self.affine)


def voxel_size_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm: the norms of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def b0_direction_voxel(affine: np.ndarray) -> np.ndarray:
    """The scanner's B0 axis (RAS/LPS +z, superior) expressed in the voxel frame.

    With R the affine's rotation (columns normalised), b̂_voxel = Rᵀ·ẑ. For an axial acquisition this is
    (0, 0, ±1); for an oblique one it is tilted, which the dipole kernel must know.
    """
    rotation = np.asarray(affine, float)[:3, :3] / voxel_size_from_affine(affine)
    direction = rotation.T @ np.array([0.0, 0.0, 1.0])
    return direction / np.linalg.norm(direction)


def phase_to_radians(phase: np.ndarray, name: str) -> np.ndarray:
    """Scale stored phase to radians: radians as is, Siemens −4096…4095 by π/4096, other ranges linearly."""
    lo, hi = float(np.min(phase)), float(np.max(phase))
    if lo >= -np.pi - 1e-3 and hi <= np.pi + 1e-3:
        return np.asarray(phase, dtype=np.float32)
    if lo >= SIEMENS_PHASE_RANGE[0] - 0.5 and hi <= SIEMENS_PHASE_RANGE[1] + 0.5 and hi - lo > 100:
        log.warning("%s: phase in Siemens units (%g…%g); scaled to radians by π/4096", name, lo, hi)
        return np.multiply(phase, np.float32(np.pi / 4096.0), dtype=np.float32)
    log.warning("%s: phase range %g…%g is neither radians nor Siemens units; rescaled linearly to −π…π", name, lo, hi)
    return ((phase - lo) / (hi - lo) * 2 * np.pi - np.pi).astype(np.float32)


def validate_gre(magnitude, phase, te_s, affine_mag, affine_phase, name: str) -> np.ndarray:
    """Check a magnitude/phase pair and its echo times; raise :class:`InputError` naming the problem."""
    if magnitude.shape[:3] != phase.shape[:3]:
        raise InputError(f"{name}: magnitude grid {magnitude.shape[:3]} differs from phase grid {phase.shape[:3]}")
    if magnitude.shape[3] != phase.shape[3]:
        raise InputError(f"{name}: phase has {phase.shape[3]} echoes but magnitude has {magnitude.shape[3]}")
    if not np.allclose(affine_mag, affine_phase, atol=1e-3):
        raise InputError(f"{name}: magnitude and phase have different orientation or position in their headers")
    if te_s is None or len(te_s) == 0:
        raise InputError(f"{name}: echo times are missing; give them with --te (seconds)")
    te_s = np.asarray(te_s, dtype=np.float64)
    if len(te_s) != magnitude.shape[3]:
        raise InputError(f"{name}: {len(te_s)} echo times given for {magnitude.shape[3]} echoes")
    if np.any(te_s <= 0) or np.any(te_s > 1.0):
        raise InputError(f"{name}: echo times {te_s.tolist()} are not in seconds (expected e.g. 0.00492)")
    if np.any(np.diff(te_s) <= 0):
        raise InputError(f"{name}: echo times must increase, got {te_s.tolist()}")
    for label, arr in (("magnitude", magnitude), ("phase", phase)):
        if not np.isfinite(np.sum(arr, dtype=np.float64)):  # one pass, no temporary mask
            raise InputError(f"{name}: the {label} contains NaN or infinite values")
    if not np.any(magnitude):
        raise InputError(f"{name}: the magnitude is zero everywhere")
    return te_s


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


def load_nifti_gre(magnitude_paths, phase_paths, te_s, b0_tesla: float = 3.0) -> GreSeries:
    """Explicit NIfTI input: one 4-D file or one 3-D file per echo for each of magnitude and phase."""
    mag_paths = [Path(p) for p in magnitude_paths]
    pha_paths = [Path(p) for p in phase_paths]
    magnitude, aff_m = _stack_echoes(mag_paths)
    phase, aff_p = _stack_echoes(pha_paths)
    name = mag_paths[0].name
    te = validate_gre(magnitude, phase, te_s, aff_m, aff_p, name)
    phase = phase_to_radians(phase, str(pha_paths[0]))
    return GreSeries(magnitude, phase, te, float(b0_tesla), aff_m, source=str(mag_paths[0].parent))


def _sidecar(nifti: Path) -> dict:
    stem = nifti.name.split(".nii")[0]
    side = nifti.with_name(stem + ".json")
    if not side.exists():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{side}: not valid JSON ({exc})") from None


def load_bids_anat(anat_dir, te_s=None, b0_tesla: float | None = None) -> GreSeries:
    """A BIDS ``anat`` folder of ``*_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` with JSON sidecars.

    EchoTime (s) and MagneticFieldStrength (T) come from the sidecars unless ``te_s``/``b0_tesla`` are
    given; a ``B0_dir`` entry (the B0 direction in the voxel frame, as qsm-forward writes it) is used
    instead of the direction implied by the affine.
    """
    anat_dir = Path(anat_dir)
    if not anat_dir.is_dir():
        raise InputError(f"{anat_dir}: not a folder")
    groups: dict[str, dict[int, Path]] = {}
    for f in sorted(anat_dir.iterdir()):
        m = _BIDS_MAG.match(f.name)
        if m:
            key = f"{m['prefix']}_*_{m['suffix']}"
            groups.setdefault(key, {})[int(m["echo"])] = f
    if not groups:
        raise InputError(f"{anat_dir}: no *_echo-N_part-mag_MEGRE.nii[.gz] files found")
    if len(groups) > 1:
        raise InputError(f"{anat_dir}: several MEGRE series found ({', '.join(sorted(groups))}); give one folder per series")
    mags = groups.popitem()[1]
    echoes = sorted(mags)
    mag_paths = [mags[e] for e in echoes]
    pha_paths = []
    for p in mag_paths:
        q = p.with_name(p.name.replace("_part-mag_", "_part-phase_"))
        if not q.exists():
            raise InputError(f"{anat_dir}: phase file {q.name} for {p.name} is missing")
        pha_paths.append(q)
    sidecars = [_sidecar(p) for p in mag_paths]
    if te_s is None:
        missing = [p.name for p, s in zip(mag_paths, sidecars) if "EchoTime" not in s]
        if missing:
            raise InputError(f"{anat_dir}: EchoTime missing from the JSON sidecar of {missing[0]}; give --te")
        te_s = [float(s["EchoTime"]) for s in sidecars]
    if b0_tesla is None:
        b0_tesla = float(sidecars[0].get("MagneticFieldStrength", 3.0))
    series = load_nifti_gre(mag_paths, pha_paths, te_s, b0_tesla)
    b0_dir = sidecars[0].get("B0_dir")
    if b0_dir is not None:
        try:
            b0_dir = tuple(float(v) for v in b0_dir)
            if len(b0_dir) != 3 or not np.linalg.norm(b0_dir) > 0:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"{anat_dir}: B0_dir in the sidecar of {mag_paths[0].name} is not a 3-vector") from None
        log.info("%s: B0 direction %s (voxel frame) from the sidecar", anat_dir, b0_dir)
    return GreSeries(series.magnitude, series.phase_rad, series.te_s, series.b0_tesla, series.affine, str(anat_dir),
                     b0_dir_voxel=b0_dir)


def load_gre(input_path, te_s=None, b0_tesla: float | None = None) -> GreSeries:
    """Dispatch on the input: a BIDS anat folder (or a folder containing ``anat/``) or a DICOM folder."""
    path = Path(input_path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_dir():
        if (path / "anat").is_dir() and not any(_BIDS_MAG.match(f.name) for f in path.iterdir()):
            path = path / "anat"
        if any(_BIDS_MAG.match(f.name) for f in path.iterdir()):
            return load_bids_anat(path, te_s=te_s, b0_tesla=b0_tesla)
        from .dicom import load_dicom_gre

        return load_dicom_gre(path, te_s=te_s, b0_tesla=b0_tesla)
    raise InputError(f"{path}: give a BIDS anat folder, a DICOM folder, or --magnitude/--phase NIfTI files")


def save_nifti(path, data: np.ndarray, affine: np.ndarray, *, description: str = "") -> Path:
    """Write a NIfTI file atomically (temporary file in the same folder, fsync, rename).

    ``.nii.gz`` is compressed on all cores (:func:`write_gzip`); any gzip reader opens it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gz = path.name.endswith(".nii.gz")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nii.gz" if gz else ".nii", dir=path.parent)
    try:
        img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, float))
        img.header.set_xyzt_units("mm", "sec")
        if description:
            img.header["descrip"] = description[:79].encode()
        with os.fdopen(fd, "wb") as handle:
            if gz:
                write_gzip(handle, img.to_bytes())
            else:
                handle.write(img.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
