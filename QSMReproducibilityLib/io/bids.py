"""A BIDS ``anat`` folder of ``*_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` with JSON sidecars.

That is the layout dcm2niix and qsm-forward write; the sidecars give EchoTime (s), MagneticFieldStrength (T)
and, from qsm-forward, ``B0_dir`` (the B0 direction in the voxel frame).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .nifti import load_nifti_gre
from .series import GreSeries, check_b0

log = logging.getLogger(__name__)

BIDS_MAGNITUDE_NAME = re.compile(r"^(?P<prefix>.+?)_echo-(?P<echo>\d+)_part-mag_(?P<suffix>.*MEGRE)\.nii(\.gz)?$")


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
        m = BIDS_MAGNITUDE_NAME.match(f.name)
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
                     b0_dir_given=b0_dir, phase_scaling=series.phase_scaling)
