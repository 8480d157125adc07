"""Accuracy against the independent simulator qsm-forward, through the `qsmrepro reconstruct` CLI.

qsm-forward (PyPI) writes a BIDS MEGRE dataset of cylinders with known χ; the study's 7 echo times at
3 T; B0 along z and tilted by 15°. Demeaned NRMSE in the local field's mask <= 0.30 and every cylinder's
mean with the right sign, within 10 % of truth with the study's chain (V-SHARP + STAR) and within 15 % with
the default (total-field fit + STAR; it reads the tilted −0.2 ppm cylinder as −0.174, V-SHARP −0.183: the
price of keeping the mask's edge, where the skull-base lesions are — Testing/Python/test_skull_base.py).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cli_driver import qsmrepro

STUDY_TE = ["0.00492", "0.00738", "0.00984", "0.0123", "0.01476", "0.01722", "0.01968"]
CYLINDERS_PPM = (0.1, -0.1, 0.2, -0.2)


def _qsm_forward(tmp_path, b0_dir):
    beside = Path(sys.executable).with_name("qsm-forward")
    exe = str(beside) if beside.exists() else shutil.which("qsm-forward")
    if exe is None:
        pytest.skip("qsm-forward is not installed (make test installs it)")
    out = tmp_path / "bids"
    subprocess.run([exe, "simple", str(out), "--TEs", *STUDY_TE, "--B0", "3", "--B0-dir", *map(str, b0_dir),
                    "--small-cylinder-vals", *map(str, CYLINDERS_PPM), "--save-chi", "--save-mask"],
                   check=True, capture_output=True)
    return out


def _reconstruct(bids, qsm, field, method, *options):
    proc = qsmrepro("reconstruct", bids / "sub-1" / "anat", "-o", qsm, "--save-field", field, "--method", method,
                    *options)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("chain, options, tolerance", [("default", (), 0.15),
                                                       ("study", ("--background", "vsharp"), 0.10)])
@pytest.mark.parametrize("tilt_deg", [0.0, 15.0])
def test_star_qsm_on_qsm_forward_cylinders(tmp_path, tilt_deg, chain, options, tolerance):
    tilt = np.deg2rad(tilt_deg)
    bids = _qsm_forward(tmp_path, (0.0, np.sin(tilt), np.cos(tilt)))
    qsm = tmp_path / "qsm.nii.gz"
    field = tmp_path / "local_field.nii.gz"
    _reconstruct(bids, qsm, field, "star", *options)
    sidecar = json.loads((tmp_path / "qsm.json").read_text())
    assert sidecar["Method"] == "star" and sidecar["Units"] == "ppm"
    assert sidecar["EchoTime"] == pytest.approx([float(t) for t in STUDY_TE])
    assert sidecar["B0DirectionVoxel"] == pytest.approx([0.0, np.sin(tilt), np.cos(tilt)], abs=1e-6)
    chi = nib.load(qsm).get_fdata()
    truth = nib.load(bids / "derivatives" / "qsm-forward" / "sub-1" / "anat" / "sub-1_Chimap.nii").get_fdata()
    img = nib.load(qsm)
    assert np.allclose(img.affine, nib.load(next((bids / "sub-1" / "anat").glob("*echo-1_part-mag*.nii"))).affine)
    eroded = nib.load(field).get_fdata() != 0  # where the local field is defined (V-SHARP erodes the mask)
    a = chi[eroded] - chi[eroded].mean()
    b = truth[eroded] - truth[eroded].mean()
    nrmse = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert nrmse <= 0.30
    for value in CYLINDERS_PPM:
        cylinder = eroded & np.isclose(truth, value, atol=1e-4)
        assert cylinder.sum() > 500
        measured = chi[cylinder].mean() - chi[eroded].mean() + truth[eroded].mean()
        assert np.sign(measured) == np.sign(value)
        assert measured == pytest.approx(value, rel=tolerance), f"cylinder {value:+.1f} ppm read {measured:+.3f}"
    if chain != "study":
        return

    # The iterative Tikhonov method is a textbook weighted-L2 pipeline, which the issue puts at NRMSE
    # 0.32–0.40: it must stay within that (0.35 along z, 0.37 tilted here), every cylinder with the right
    # sign and within 20 % (L2 regularisation shrinks them: the tilted −0.2 ppm reads −0.171).
    _reconstruct(bids, qsm, field, "iterative-tikhonov", *options)
    chi = nib.load(qsm).get_fdata()
    a = chi[eroded] - chi[eroded].mean()
    assert np.linalg.norm(a - b) / np.linalg.norm(b) <= 0.40
    for value in CYLINDERS_PPM:
        cylinder = eroded & np.isclose(truth, value, atol=1e-4)
        measured = chi[cylinder].mean() - chi[eroded].mean() + truth[eroded].mean()
        assert np.sign(measured) == np.sign(value)
        assert measured == pytest.approx(value, rel=0.20), f"cylinder {value:+.1f} ppm read {measured:+.3f} (Tikhonov)"
