"""GRE input: formats, geometry and the errors a radiologist sees."""

import subprocess

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib.errors import InputError
from QSMReproducibilityLib.io import b0_dir_from_affine, load_bids_anat, load_nifti_gre, phase_to_radians

from cli_driver import qsmrepro

TE = [0.00492, 0.00738, 0.00984]


def _write(path, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return path


def _bids(folder, n_echoes=3, phase_scale=1.0, te=TE, sidecar=True):
    from QSMReproducibilityLib.phantom import write_bids_megre

    rng = np.random.default_rng(0)
    magnitude, phase = [], []
    for _ in range(n_echoes):
        magnitude.append(rng.random((8, 8, 4)) + 1)
        phase.append((rng.random((8, 8, 4)) * 2 - 1) * np.pi * phase_scale)
    write_bids_megre(folder, "sub-1", np.stack(magnitude, -1).astype(np.float32),
                     np.stack(phase, -1).astype(np.float32), np.eye(4), te[:n_echoes], 3)
    if not sidecar:
        for path in folder.glob("*.json"):
            path.unlink()
    return folder


def test_b0_direction_of_an_oblique_acquisition():
    """A slab tilted 15° about the x axis sees B0 at (0, sin 15°, cos 15°) in its voxel frame."""
    angle = np.deg2rad(15)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.72, 0.72, 2.0])
    np.testing.assert_allclose(b0_dir_from_affine(affine), [0, np.sin(angle), np.cos(angle)], atol=1e-12)


def test_siemens_phase_is_scaled_to_radians():
    raw = np.array([-4096.0, 0.0, 2048.0, 4095.0])
    np.testing.assert_allclose(phase_to_radians(raw, "x"), [-np.pi, 0, np.pi / 2, 4095 * np.pi / 4096], rtol=1e-6)


def test_bids_folder_reads_echo_times_and_field(tmp_path):
    gre = load_bids_anat(_bids(tmp_path / "anat"))
    assert gre.n_echoes == 3 and gre.b0_tesla == 3.0
    np.testing.assert_allclose(gre.te_s, TE)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_te", "EchoTime missing"),
        ("decreasing_te", "echo times must increase"),
        ("echo_count", "echoes but magnitude has"),
        ("nan", "NaN"),
        ("zero_magnitude", "zero everywhere"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, case, message):
    anat = tmp_path / "anat"
    if case == "missing_te":
        _bids(anat, sidecar=False)
        with pytest.raises(InputError, match=message):
            load_bids_anat(anat)
        return
    if case == "decreasing_te":
        _bids(anat, te=[0.01, 0.008, 0.012])
        with pytest.raises(InputError, match=message):
            load_bids_anat(anat)
        return
    mag = np.ones((6, 6, 3, 3))
    pha = np.zeros((6, 6, 3, 3))
    if case == "echo_count":
        pha = pha[..., :2]
    if case == "nan":
        pha[0, 0, 0, 0] = np.nan
    if case == "zero_magnitude":
        mag[:] = 0
    m = _write(tmp_path / "mag.nii", mag)
    p = _write(tmp_path / "pha.nii", pha)
    with pytest.raises(InputError, match=message):
        load_nifti_gre([m], [p], TE)


def test_cli_reports_errors_without_traceback_and_writes_nothing(tmp_path):
    anat = _bids(tmp_path / "anat", te=[0.01, 0.008, 0.012])
    out = tmp_path / "qsm.nii.gz"
    proc = qsmrepro("reconstruct", anat, "-o", out)
    assert proc.returncode == 2
    assert "echo times must increase" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.nii*"))


def test_magnitude_and_phase_on_different_grids_are_refused(tmp_path):
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    mag = _write(tmp_path / "mag.nii", np.ones((6, 6, 3, 3)))
    pha_moved = _write(tmp_path / "pha_moved.nii", np.zeros((6, 6, 3, 3)), shifted)
    pha_small = _write(tmp_path / "pha_small.nii", np.zeros((6, 5, 3, 3)))
    with pytest.raises(InputError, match="different orientation or position"):
        load_nifti_gre([mag], [pha_moved], TE)
    with pytest.raises(InputError, match=r"magnitude grid \(6, 6, 3\) differs from phase grid \(6, 5, 3\)"):
        load_nifti_gre([mag], [pha_small], TE)


@pytest.mark.parametrize("chunk_bytes", [2**22, 4096])
def test_parallel_gzip_nifti_is_read_by_gzip_nibabel_and_itk(tmp_path, chunk_bytes, monkeypatch):
    import gzip

    import SimpleITK as sitk

    from QSMReproducibilityLib.io import nifti as io

    original = io.write_gzip
    monkeypatch.setattr(io, "write_gzip", lambda handle, data: original(handle, data, chunk_bytes=chunk_bytes))
    rng = np.random.default_rng(3)
    data = np.zeros((40, 30, 12), np.float32)
    data[5:35, 4:26, :] = rng.standard_normal((30, 22, 12))
    affine = np.diag([0.72, 0.72, 2.0, 1.0])
    path = io.save_nifti(tmp_path / "chi.nii.gz", data, affine)
    raw = gzip.decompress(path.read_bytes())  # Python's reader checks the CRC-32 and the length
    assert len(raw) == 352 + data.nbytes
    np.testing.assert_array_equal(nib.load(str(path)).get_fdata(dtype=np.float32), data)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0), data)
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0


def test_gzip_of_nothing_is_a_valid_empty_member():
    import gzip
    import io as pyio

    from QSMReproducibilityLib.io import write_gzip

    buffer = pyio.BytesIO()
    write_gzip(buffer, b"")
    assert gzip.decompress(buffer.getvalue()) == b""
