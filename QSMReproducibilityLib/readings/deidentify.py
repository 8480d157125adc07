"""Images enter the study folder without identifying text.

A QSM or mask NIfTI may come from a converter that left a series description, a patient name or a whole
DICOM header (extension ``ecode`` 2) in it: :func:`copy_nifti_deidentified` keeps the voxels and the
geometry and drops the rest.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from ..fileio import atomic_output

__all__ = ["copy_nifti_deidentified", "copy_verbatim"]

# Free-text NIfTI header fields; converters may put series descriptions or names there.
_NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")


def copy_nifti_deidentified(source: Path, destination: Path) -> None:
    """Copy a NIfTI image to ``destination`` (``.nii.gz``) atomically, without identifying text.

    The voxel data and the geometry are copied byte for byte (the gzip header carries no time stamp, so
    the same image always gives the same file); the free-text header fields and the header extensions (which may carry a whole DICOM header, ``ecode`` 2) are dropped, so that no
    patient name or DICOM identifier of the source reaches the study folder.
    """
    import nibabel as nib

    image = nib.load(str(source))
    with atomic_output(destination) as tmp:
        if isinstance(image.header, nib.Nifti1Header) and image.header.is_single:  # NIfTI-1/-2 single files
            # The header as stored in the file (a loaded image's header no longer holds the data offset).
            with nib.openers.ImageOpener(str(source), "rb") as src:
                stored = type(image.header).from_fileobj(src)
            data_offset = int(stored.get_data_offset())
            clean = stored.copy()
            clean.extensions.clear()
            for name in _NIFTI_TEXT_FIELDS:
                if name in clean.keys():
                    clean[name] = b""
            clean["vox_offset"] = 0  # set by write_to to the end of the header: the data follows directly
            with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as dst:
                clean.write_to(dst)
                with nib.openers.ImageOpener(str(source), "rb") as src:
                    src.seek(data_offset)
                    shutil.copyfileobj(src, dst, 1 << 20)
        else:  # a header/image pair or another format nibabel reads: store the scaled values
            with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as dst:
                dst.write(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine).to_bytes())


def copy_verbatim(source: Path, destination: Path) -> None:
    """Copy a file byte for byte to ``destination``, atomically (a file the library wrote itself, which holds
    no identifying text)."""
    with atomic_output(destination) as tmp:
        shutil.copyfile(source, tmp)
