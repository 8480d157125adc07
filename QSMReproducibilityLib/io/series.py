"""The multi-echo GRE series every reader produces, and the checks it must pass.

:class:`GreSeries` holds magnitude and phase indexed (i, j, k, echo) with a voxel→RAS affine in mm, echo
times in seconds and the field strength in tesla. Here too: how stored phase values become radians
(:func:`phase_scaling`), the field-strength check, the B0 direction in the voxel frame, and
:func:`validate_gre`, which every reader calls before it builds a series.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

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


@dataclass(frozen=True)
class GreSeries:
    """Multi-echo GRE data in physical units.

    magnitude, phase_rad : (X, Y, Z, E) float32; phase wrapped, in radians. Readers store each echo
        contiguously (the arrays are echo-first in memory), which the per-echo steps rely on for speed.
    te_s : (E,) echo times in seconds, strictly increasing.
    b0_tesla : main field strength in tesla.
    affine : 4×4 voxel→RAS matrix in mm.
    source : a short description of where the data came from (for messages and provenance).
    b0_dir_given : the B0 direction in the voxel frame when it is known explicitly (a ``B0_dir``
        sidecar entry, as qsm-forward writes, or ``--b0-dir``); otherwise :attr:`b0_dir` follows from the
        affine.
    phase_scaling : how the stored phase values were turned into radians (recorded with the QSM).
    """

    magnitude: np.ndarray
    phase_rad: np.ndarray
    te_s: np.ndarray
    b0_tesla: float
    affine: np.ndarray
    source: str = ""
    b0_dir_given: tuple[float, float, float] | None = None
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
        """The B0 direction in the voxel frame, a unit vector."""
        if self.b0_dir_given is not None:
            direction = np.asarray(self.b0_dir_given, dtype=float)
            return direction / np.linalg.norm(direction)
        return b0_dir_from_affine(self.affine)


def voxel_size_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm: the norms of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def b0_dir_from_affine(affine: np.ndarray) -> np.ndarray:
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
