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
PHASE_UNITS = ("auto", "radians", "siemens", "rescale")
"""How stored phase values are read: ``auto`` decides from their range (see :func:`phase_scaling`)."""
B0_RANGE_TESLA = (0.1, 21.0)
"""Field strengths accepted, in tesla: from low-field scanners to the strongest human magnets."""
ASSUMED_B0_TESLA = 3.0
# MriResearchTools' readphase (Eckstein et al., MriResearchTools.jl, src/niftihandling.jl) takes a phase
# whose range lies within 0.1 rad of 2π as radians and rescales any other range onto [−π, π].
_TWO_PI_TOLERANCE_RAD = 0.1
# Integer phase encodings of a full turn: (units, value of −π, stored values per 2π). Siemens DICOM (and
# dcm2niix after its rescale slope 2, intercept −4096) store −4096…4095; some exports keep the raw 12-bit
# 0…4095.
_INTEGER_PHASE_CODES = (("siemens", -4096.0, 8192.0), ("0-4095", 0.0, 4096.0))
_INTEGER_SPAN_FRACTION = 0.9  # a full-turn phase of a head (noise in the air included) fills its range
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
    phase_scaling : how the stored phase values were turned into radians (recorded with the QSM).
    """

    magnitude: np.ndarray
    phase_rad: np.ndarray
    te_s: np.ndarray
    b0_tesla: float
    affine: np.ndarray
    source: str = ""
    b0_dir_voxel: tuple[float, float, float] | None = None
    phase_scaling: "PhaseScaling | None" = None

    def __post_init__(self):
        check_b0(self.b0_tesla, f"{self.source or 'GRE series'}: B0")

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


@dataclass(frozen=True)
class PhaseScaling:
    """How stored phase values became radians: φ = value · radians_per_unit + offset_rad, wrapped onto [−π, π).

    requested : the units asked for (one of :data:`PHASE_UNITS`).
    units : the units used: ``radians``, ``siemens`` (−4096…4095), ``0-4095`` or ``rescaled`` (the range
        found mapped onto [−π, π)).
    stored_range : the smallest and largest stored value.
    """

    requested: str
    units: str
    stored_range: tuple[float, float]
    radians_per_unit: float = 1.0
    offset_rad: float = 0.0

    def describe(self) -> str:
        """How the values were read, e.g. "Siemens units −4096…4095, scaled by π/4096"."""
        if self.units == "radians":
            return "radians"
        if self.units == "siemens":
            return "Siemens units −4096…4095, scaled by π/4096"
        if self.units == "0-4095":
            return "12-bit units 0…4095, scaled by 2π/4096 and shifted by −π"
        return f"rescaled linearly onto [−π, π) (× {self.radians_per_unit:.6g}, {self.offset_rad:+.6g} rad)"

    def as_dict(self) -> dict:
        """The entries of the QSM's JSON sidecar."""
        return {"requested": self.requested, "units": self.units,
                "stored_range": [float(v) for v in self.stored_range],
                "radians_per_unit": float(self.radians_per_unit), "offset_rad": float(self.offset_rad)}


def phase_scaling(phase: np.ndarray, name: str, units: str = "auto") -> PhaseScaling:
    """Decide how stored phase values map onto radians; ``name`` (the file) is used in messages.

    ``auto`` follows MriResearchTools' ``readphase``: a phase whose range spans about 2π (within 0.1 rad)
    is radians, whatever its offset (−π…π, 0…2π); a phase that fills the Siemens range −4096…4095 or
    the 12-bit range 0…4095 is scaled by its known factor; any other range (a rescaled export such as
    ±0.004, 0…600, degrees) is mapped linearly onto [−π, π) with a warning. ``radians`` takes the values
    as they are (for a phase the user knows to be radians although its range is narrower), ``siemens``
    scales by π/4096, ``rescale`` always maps the range found onto [−π, π). A phase that is the same
    everywhere carries no field and is refused.
    """
    if units not in PHASE_UNITS:
        raise InputError(f"{name}: unknown phase units {units!r}; choose one of {', '.join(PHASE_UNITS)}")
    lo, hi = float(np.min(phase)), float(np.max(phase))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name}: the phase contains NaN or infinite values")
    span = hi - lo
    if span <= 0:
        raise InputError(f"{name}: the phase is {lo:g} everywhere, which is not a phase image "
                         "(check that the phase files were exported, not the magnitude again)")
    found = (lo, hi)
    if units == "radians":
        return PhaseScaling(units, "radians", found)
    if units == "siemens":
        low, high = SIEMENS_PHASE_RANGE
        if lo < low - 0.5 or hi > high + 0.5:
            raise InputError(f"{name}: phase values {lo:g}…{hi:g} lie outside the Siemens range −4096…4095; "
                             "use --phase-units auto or rescale")
        return PhaseScaling(units, "siemens", found, np.pi / 4096.0, 0.0)
    if units == "auto":
        if abs(span - 2 * np.pi) <= _TWO_PI_TOLERANCE_RAD:
            return PhaseScaling(units, "radians", found)
        for code, minus_pi, per_turn in _INTEGER_PHASE_CODES:
            if lo >= minus_pi - 0.5 and hi <= minus_pi + per_turn + 0.5 and span >= _INTEGER_SPAN_FRACTION * per_turn:
                scale = 2 * np.pi / per_turn
                scaling = PhaseScaling(units, code, found, scale, -np.pi - minus_pi * scale)
                log.warning("%s: phase range %.6g…%.6g read as %s", name, lo, hi, scaling.describe())
                return scaling
    scale = 2 * np.pi / span
    scaling = PhaseScaling(units, "rescaled", found, scale, -np.pi - lo * scale)
    if units == "auto":
        log.warning("%s: phase range %.6g…%.6g does not span 2π, so it is not wrapped radians; %s; give "
                    "--phase-units radians if it is radians", name, lo, hi, scaling.describe())
    return scaling


def apply_phase_scaling(phase: np.ndarray, scaling: PhaseScaling, *, in_place: bool = False) -> np.ndarray:
    """Stored phase → radians on [−π, π) as float32 (``in_place`` reuses a float32 ``phase``)."""
    out = phase if in_place and phase.dtype == np.float32 else np.array(phase, dtype=np.float32)
    if scaling.radians_per_unit != 1.0 or scaling.offset_rad != 0.0:
        out *= np.float32(scaling.radians_per_unit)
        out += np.float32(scaling.offset_rad)
    lo, hi = scaling.stored_range[0] * scaling.radians_per_unit + scaling.offset_rad, \
        scaling.stored_range[1] * scaling.radians_per_unit + scaling.offset_rad
    if lo < -np.pi - 1e-3 or hi > np.pi + 1e-3:
        # A whole turn changes nothing in exp(iφ): wrap (e.g. 0…2π radians) onto [−π, π).
        two_pi = np.float32(2 * np.pi)
        out -= two_pi * np.floor((out + np.float32(np.pi)) / two_pi)
    return out


def phase_to_radians(phase: np.ndarray, name: str, units: str = "auto") -> np.ndarray:
    """Stored phase → radians on [−π, π) (float32, a new array); see :func:`phase_scaling` for ``units``."""
    return apply_phase_scaling(phase, phase_scaling(phase, name, units))


def check_b0(b0_tesla, source: str) -> float:
    """The field strength as a float in tesla; :class:`InputError` outside 0.1–21 T.

    ``source`` says where the value came from, e.g. ``"--b0"`` or ``"<sidecar>: MagneticFieldStrength"``.
    """
    try:
        value = float(b0_tesla)
    except (TypeError, ValueError):
        raise InputError(f"{source} {b0_tesla!r} is not a field strength in tesla") from None
    low, high = B0_RANGE_TESLA
    if not low <= value <= high:
        raise InputError(f"{source} {value:g} T is outside {low:g}–{high:g} T; give the field strength in tesla "
                         "(e.g. 3)")
    return value


def assumed_b0(source: str) -> float:
    """3 T, for an input (``source``) that records no field strength, with a warning that says so."""
    log.warning("%s: no field strength in the sidecars or DICOM headers and none given (--b0); "
                "%g T assumed", source, ASSUMED_B0_TESLA)
    return ASSUMED_B0_TESLA


def validate_gre(magnitude, phase, te_s, affine_mag, affine_phase, name: str, phase_name: str | None = None
                 ) -> np.ndarray:
    """Check a magnitude/phase pair and its echo times; raise :class:`InputError` naming the problem.

    ``name`` names the input (the magnitude file or the folder) in messages, ``phase_name`` the phase file
    where the problem is the phase's (default ``name``).
    """
    phase_name = phase_name or name
    if magnitude.shape[:3] != phase.shape[:3]:
        raise InputError(f"{phase_name}: magnitude grid {magnitude.shape[:3]} differs from phase grid "
                         f"{phase.shape[:3]} (magnitude: {name})")
    if magnitude.shape[3] != phase.shape[3]:
        raise InputError(f"{phase_name}: phase has {phase.shape[3]} echoes but magnitude has {magnitude.shape[3]} "
                         f"(magnitude: {name})")
    if not np.allclose(affine_mag, affine_phase, atol=1e-3):
        raise InputError(f"{phase_name}: magnitude and phase have different orientation or position in their "
                         f"headers (magnitude: {name})")
    if te_s is None or len(te_s) == 0:
        raise InputError(f"{name}: echo times are missing; give them with --te (seconds)")
    try:
        te_s = np.asarray(te_s, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name}: echo times {list(te_s)!r} are not numbers in seconds") from None
    if len(te_s) != magnitude.shape[3]:
        raise InputError(f"{name}: {len(te_s)} echo times given for {magnitude.shape[3]} echoes")
    if not np.all(np.isfinite(te_s)) or np.any(te_s <= 0) or np.any(te_s > 1.0):
        raise InputError(f"{name}: echo times {te_s.tolist()} are not in seconds (expected e.g. 0.00492)")
    if np.any(np.diff(te_s) <= 0):
        raise InputError(f"{name}: echo times must increase, got {te_s.tolist()}")
    for label, arr, where in (("magnitude", magnitude, name), ("phase", phase, phase_name)):
        if not np.isfinite(np.sum(arr, dtype=np.float64)):  # one pass, no temporary mask
            raise InputError(f"{where}: the {label} contains NaN or infinite values")
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


def _sidecar(nifti: Path) -> dict:
    stem = nifti.name.split(".nii")[0]
    side = nifti.with_name(stem + ".json")
    if not side.exists():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{side}: not valid JSON ({exc})") from None


def load_bids_anat(anat_dir, te_s=None, b0_tesla: float | None = None, *, phase_units: str = "auto") -> GreSeries:
    """A BIDS ``anat`` folder of ``*_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` with JSON sidecars.

    EchoTime (s) and MagneticFieldStrength (T) come from the sidecars unless ``te_s``/``b0_tesla`` are
    given (3 T with a warning when neither has it); a ``B0_dir`` entry (the B0 direction in the voxel
    frame, as qsm-forward writes it) is used instead of the direction implied by the affine. Echoes
    must be numbered 1…N without gaps. ``phase_units``: see :func:`phase_scaling`.
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
    gaps = sorted(set(range(1, echoes[-1] + 1)) - set(echoes))
    if gaps:
        raise InputError(f"{anat_dir}: echo {', '.join(map(str, gaps))} of the MEGRE series is missing (found echoes "
                         f"{', '.join(map(str, echoes))}); copy every echo, or give --magnitude/--phase and --te")
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
        te_s = []
        for path, side in zip(mag_paths, sidecars):
            where = path.with_name(path.name.split(".nii")[0] + ".json")
            try:
                te = float(side["EchoTime"])
            except (TypeError, ValueError):
                raise InputError(f"{where}: EchoTime {side['EchoTime']!r} is not a number in seconds") from None
            if not 0 < te <= 1.0:
                raise InputError(f"{where}: EchoTime {te:g} is not in seconds (BIDS sidecars give seconds, e.g. "
                                 "0.00492); correct the sidecar or give --te in seconds")
            te_s.append(te)
    if b0_tesla is None:
        candidates = list(zip(mag_paths, sidecars)) + [(pha_paths[0], _sidecar(pha_paths[0]))]
        recorded = [(path, side["MagneticFieldStrength"]) for path, side in candidates
                    if "MagneticFieldStrength" in side]
        if recorded:  # else 3 T is assumed, with a warning, once the data have been read
            path, value = recorded[0]
            b0_tesla = check_b0(value, f"{path.with_name(path.name.split('.nii')[0] + '.json')}: MagneticFieldStrength")
    series = load_nifti_gre(mag_paths, pha_paths, te_s, b0_tesla, phase_units=phase_units)
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
                     b0_dir_voxel=b0_dir, phase_scaling=series.phase_scaling)


def load_gre(input_path, te_s=None, b0_tesla: float | None = None, *, phase_units: str = "auto") -> GreSeries:
    """Dispatch on the input: a BIDS anat folder (or a folder containing ``anat/``) or a DICOM folder.

    ``phase_units`` is one of :data:`PHASE_UNITS` (see :func:`phase_scaling`).
    """
    path = Path(input_path)
    if phase_units not in PHASE_UNITS:
        raise InputError(f"unknown phase units {phase_units!r}; choose one of {', '.join(PHASE_UNITS)}")
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_dir():
        if (path / "anat").is_dir() and not any(_BIDS_MAG.match(f.name) for f in path.iterdir()):
            path = path / "anat"
        if any(_BIDS_MAG.match(f.name) for f in path.iterdir()):
            return load_bids_anat(path, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
        from .dicom import load_dicom_gre

        return load_dicom_gre(path, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
    raise InputError(f"{path}: give a BIDS anat folder, a DICOM folder, or --magnitude/--phase NIfTI files")


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
