"""Test helper: write multi-echo GRE as a DICOM folder, the way scanners export it."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk


def write_dicom_gre(anat_dir: Path, out_dir: Path, identifiers: dict) -> None:
    """A BIDS MEGRE folder's echoes as one DICOM series per echo and part, as a Siemens scanner exports them
    (phase stored as −4096…4095, ImageType M/P, EchoTime in ms); ``identifiers`` are extra tags."""

    out_dir.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = 0
    for mag_path in sorted(anat_dir.glob("*_part-mag_MEGRE.nii*")):
        for part in ("mag", "phase"):
            path = Path(str(mag_path).replace("part-mag", f"part-{part}"))
            te_s = json.loads(Path(str(path).split(".nii")[0] + ".json").read_text())["EchoTime"]
            image = nib.load(path)
            data = image.get_fdata()
            if part == "phase":  # Siemens stores phase as -4096...4095
                stored, image_type = np.clip(np.round(data / np.pi * 4096), -4096, 4095), "ORIGINAL\\PRIMARY\\P\\ND"
            else:
                stored, image_type = np.round(data / data.max() * 4000), "ORIGINAL\\PRIMARY\\M\\ND"
            lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
            spacing = np.linalg.norm(lps[:3, :3], axis=0)
            direction = lps[:3, :3] / spacing
            volume = sitk.GetImageFromArray(np.transpose(stored, (2, 1, 0)).astype(np.int16))
            volume.SetSpacing(spacing.tolist())
            volume.SetOrigin(lps[:3, 3].tolist())
            volume.SetDirection(direction.ravel().tolist())
            series += 1
            for k in range(stored.shape[2]):
                slice_ = volume[:, :, k]
                tags = dict(identifiers)
                tags.update({
                    "0008|0060": "MR", "0008|0008": image_type, "0018|0081": f"{te_s * 1000:.2f}",
                    "0018|0087": "3", "0018|0050": f"{spacing[2]:.4f}", "0020|0011": str(series),
                    "0020|000e": f"{identifiers.get('0020|000d', '1.2.826.0.1.3680043.2.1125.1')}.{series}", "0020|0013": str(k + 1),
                    "0020|0032": "\\".join(f"{v:.6f}" for v in volume.TransformIndexToPhysicalPoint((0, 0, k))),
                    "0020|0037": "\\".join(f"{v:.6f}" for v in [*direction[:, 0], *direction[:, 1]]),
                })
                for key, value in tags.items():
                    slice_.SetMetaData(key, value)
                writer.SetFileName(str(out_dir / f"DOE_JANE_{series:02d}_{k:03d}.dcm"))
                writer.Execute(slice_)
