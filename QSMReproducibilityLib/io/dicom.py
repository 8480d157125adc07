"""Multi-echo GRE from a DICOM folder (Siemens and similar), read with SimpleITK's GDCM reader.

Magnitude and phase series are told apart by ImageType (0008,0008: ``\\P\\`` or ``PHASE`` for phase),
echoes by EchoTime (0018,0081, in ms). Slices are ordered along the slice normal. Phase stored as
−4096…4095 is scaled to radians as :func:`~QSMReproducibilityLib.io.series.phase_scaling` decides; B0 comes from
MagneticFieldStrength (0018,0087).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .series import GreSeries, apply_phase_scaling, assumed_b0, check_b0, phase_scaling, validate_gre

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _tag(reader: sitk.ImageFileReader, key: str, default: str = "") -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else default


def sitk_to_ras(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK image → (array indexed i, j, k; voxel→RAS affine). ITK geometry is LPS."""
    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.float32)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return array, LPS_TO_RAS @ lps


def load_dicom_gre(folder, te_s=None, b0_tesla: float | None = None, *, phase_units: str = "auto"):
    folder = Path(folder)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    groups: dict[tuple[str, float], list[tuple[float, str]]] = defaultdict(list)
    field = None
    reader = sitk.ImageFileReader()
    for f in files:
        reader.SetFileName(str(f))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue
        image_type = _tag(reader, "0008|0008").upper()
        te = _tag(reader, "0018|0081")
        if not te:
            continue
        part = "phase" if ("\\P\\" in image_type or "PHASE" in image_type) else "mag"
        normal = np.cross(*np.array([float(x) for x in _tag(reader, "0020|0037", "1\\0\\0\\0\\1\\0").split("\\")]).reshape(2, 3))
        position = np.array([float(x) for x in _tag(reader, "0020|0032", "0\\0\\0").split("\\")])
        groups[(part, round(float(te), 4))].append((float(position @ normal), str(f)))
        field = field or _tag(reader, "0018|0087")
    if not groups:
        raise InputError(f"{folder}: no DICOM images with an EchoTime were found")
    mags = sorted(te for part, te in groups if part == "mag")
    phases = sorted(te for part, te in groups if part == "phase")
    if not phases:
        raise InputError(f"{folder}: no phase series found (ImageType without P/PHASE); QSM needs phase images")
    if mags != phases:
        raise InputError(f"{folder}: magnitude echoes {mags} ms and phase echoes {phases} ms do not match")
    if b0_tesla is not None:
        b0 = check_b0(b0_tesla, "--b0")
    else:
        b0 = check_b0(field, f"{folder}: DICOM MagneticFieldStrength (0018,0087)") if field else None

    def read(part, te):
        names = [name for _, name in sorted(groups[(part, te)])]
        return sitk_to_ras(sitk.ReadImage(names, sitk.sitkFloat32))

    mag_list, pha_list = zip(*[(read("mag", te), read("phase", te)) for te in mags])
    # Echo-first in memory, exposed as (X, Y, Z, E), like the NIfTI readers.
    magnitude = np.moveaxis(np.stack([m[0] for m in mag_list]), 0, -1)
    phase = np.moveaxis(np.stack([p[0] for p in pha_list]), 0, -1)
    te = validate_gre(
        magnitude, phase, te_s if te_s is not None else [t / 1000.0 for t in mags],
        mag_list[0][1], pha_list[0][1], str(folder),
    )
    scaling = phase_scaling(phase, f"{folder}: DICOM phase", phase_units)
    phase = apply_phase_scaling(phase, scaling, in_place=True)
    if b0 is None:  # warned only for data that are otherwise usable
        b0 = assumed_b0(str(folder))
    return GreSeries(magnitude, phase, te, b0, mag_list[0][1], str(folder), phase_scaling=scaling)
