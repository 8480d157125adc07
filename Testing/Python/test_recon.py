"""Reconstruction against closed-form fields and the independent simulator qsm-forward."""

import numpy as np
import pytest

from QSMReproducibilityLib.recon import differences, inversion, unwrap
from QSMReproducibilityLib.recon.background import pdf, vsharp


def _grid(shape, voxel):
    axes = [(np.arange(n) - n // 2) * v for n, v in zip(shape, voxel)]
    return np.meshgrid(*axes, indexing="ij")


def sphere_field(shape, voxel, radius, chi):
    """Lorentz-corrected field (ppm) of a uniformly magnetised sphere, B0 along z.

    Inside 0; outside χ/3·(a/r)³·(3cos²θ − 1) (e.g. Schenck 1996, Med Phys 23:815, eq. 19).
    """
    x, y, z = _grid(shape, voxel)
    r = np.sqrt(x**2 + y**2 + z**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        field = chi / 3 * (radius / r) ** 3 * (3 * (z / r) ** 2 - 1)
    field[r <= radius] = 0.0
    return field, r


def test_forward_field_of_sphere_matches_closed_form():
    shape, voxel, radius, chi = (96, 96, 96), (1.0, 1.0, 1.0), 8.0, 0.3
    x, y, z = _grid(shape, voxel)
    sphere = (x**2 + y**2 + z**2 <= radius**2).astype(np.float32) * chi
    # The voxelised sphere's moment is that of a sphere of equal volume: use its equivalent radius.
    radius = (3 * np.count_nonzero(sphere) / (4 * np.pi)) ** (1 / 3)
    expected, r = sphere_field(shape, voxel, radius, chi)
    field = inversion.forward_field(sphere, voxel, (0, 0, 1))
    outside = (r >= 1.6 * radius) & (r <= 3 * radius)
    inside = r <= 0.5 * radius
    peak = 2 * chi / 3
    assert np.abs(field[outside] - expected[outside]).max() < 0.03 * peak
    assert np.abs(field[inside]).max() < 0.03 * peak
    # On the B0 axis just outside: 2χ/3·(a/r)³
    k = shape[2] // 2 + 16
    assert field[48, 48, k] == pytest.approx(2 * chi / 3 * (radius / 16) ** 3, rel=0.03)


@pytest.mark.parametrize("theta_deg", [0.0, 30.0, 54.7356, 90.0])
def test_forward_field_of_infinite_cylinder(theta_deg):
    """Cylinder along voxel z, B0 tilted by θ: inside χ/6·(3cos²θ − 1); outside χ/2·sin²θ·(a/ρ)²·cos 2φ."""
    theta = np.deg2rad(theta_deg)
    shape, voxel, radius, chi = (128, 128, 16), (1.0, 1.0, 1.0), 6.0, 0.2
    x, y, _ = _grid(shape, voxel)
    rho = np.sqrt(x**2 + y**2)
    cyl = (rho <= radius).astype(np.float32) * chi
    b0 = (np.sin(theta), 0.0, np.cos(theta))
    field = inversion.forward_field(cyl, voxel, b0, pad=False)  # periodic along z: infinite cylinder
    inside_expected = chi / 6 * (3 * np.cos(theta) ** 2 - 1)
    inside = rho <= 0.5 * radius
    assert np.abs(field[inside] - inside_expected).max() < 0.01 * chi
    phi = np.arctan2(y, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        outside_expected = chi / 2 * np.sin(theta) ** 2 * (radius / rho) ** 2 * np.cos(2 * phi)
    ring = (rho >= 1.6 * radius) & (rho <= 3 * radius)
    assert np.abs(field[ring] - outside_expected[ring]).max() < 0.02 * chi


@pytest.mark.parametrize("method", ["tkd", "tikhonov", "iterative-tikhonov", "tv", "star"])
def test_inversion_recovers_sphere_from_closed_form_field(method):
    shape, voxel, radius, chi = (64, 64, 64), (1.0, 1.0, 1.0), 6.0, 0.25
    field, r = sphere_field(shape, voxel, radius, chi)
    mask = np.ones(shape, bool)
    fn = {
        "tkd": lambda: inversion.tkd(field, mask, voxel),
        "tikhonov": lambda: inversion.tikhonov(field, mask, voxel, lambda_=0.002),
        "iterative-tikhonov": lambda: inversion.iterative_tikhonov(field, mask, voxel),
        "tv": lambda: inversion.admm_inversion(field, mask, voxel, alpha=1e-4, iterations=80),
        "star": lambda: inversion.star_qsm(field, mask, voxel, iterations=40),
    }[method]
    recon = fn()
    core = r <= radius - 1.5
    background = r >= radius + 6
    contrast = recon[core].mean() - recon[background].mean()
    tolerance = {"tkd": 0.20, "tikhonov": 0.20, "iterative-tikhonov": 0.20, "tv": 0.10, "star": 0.10}[method]
    assert contrast == pytest.approx(chi, rel=tolerance)


def _background_scene():
    """An ellipsoidal brain; background: the field of a strong source outside it (harmonic inside);
    local: the field of a weak sphere at its centre. Returns (voxel, r, brain, background, local)."""
    shape, voxel = (64, 64, 40), (1.0, 1.0, 2.0)
    x, y, z = _grid(shape, voxel)
    brain = (x / 18) ** 2 + (y / 18) ** 2 + (z / 24) ** 2 <= 1
    bg, _ = sphere_field(shape, voxel, 3.0, 80.0)
    bg = np.roll(bg, 28, axis=0)
    r = np.sqrt(x**2 + y**2 + z**2)
    local = inversion.forward_field((r <= 5).astype(np.float32) * 0.2, voxel)
    return voxel, r, brain, bg, local


def test_vsharp_removes_a_harmonic_background_and_keeps_the_local_field():
    voxel, r, brain, bg, local = _background_scene()
    result = vsharp(bg + local, brain, voxel, radii_mm=(8, 6, 4, 2))
    m = result.mask & (r <= 14)
    err = result.field[m] - local[m]
    assert np.sqrt(np.mean((err - err.mean()) ** 2)) < 0.1 * np.abs(local[m]).max()
    assert np.abs(bg[m]).max() > 2 * np.abs(local[m]).max()  # the background really dominated


def test_pdf_removes_an_external_source_and_keeps_the_whole_mask():
    """Projection onto dipole fields on the same scene as the V-SHARP test: the strong source outside
    the mask is explained by sources outside it, the weak sphere inside is kept, nothing is eroded."""
    voxel, r, brain, bg, local = _background_scene()
    _assert_whole_mask_and_local_field_kept(pdf(bg + local, brain, voxel), r, brain, local)
    assert np.abs(bg[brain]).max() > 2 * np.abs(local[brain]).max()


def _assert_whole_mask_and_local_field_kept(result, r, brain, local):
    """Nothing eroded, nothing outside the mask, and the local field within 6 % of its peak (RMS, up to a
    constant) near the inner sphere and over the whole mask."""
    assert np.array_equal(result.mask, brain)
    assert not result.field[~brain].any()
    for region in (brain & (r <= 14), brain):
        err = result.field[region] - local[region]
        assert np.sqrt(np.mean((err - err.mean()) ** 2)) < 0.06 * np.abs(local[region]).max()


def test_total_field_fit_removes_an_external_source_and_keeps_the_whole_mask():
    """The background part of the preconditioned total-field fit on the same scene: the strong source
    outside the mask is explained by sources outside it, the weak sphere inside is kept, nothing is eroded."""
    from QSMReproducibilityLib.recon.background import tfi

    voxel, r, brain, bg, local = _background_scene()
    _assert_whole_mask_and_local_field_kept(tfi(bg + local, brain, voxel), r, brain, local)


def test_total_field_fit_keeps_the_field_of_a_source_at_the_mask_edge():
    """A small strong source just inside the mask's edge (a wall lesion against the clivus) beside a strong
    source outside it: PDF explains part of the lesion's field by sources just outside the mask; the
    total-field fit, which fits the sources inside at the same time, keeps more of it. Truth: the forward
    field of the lesion alone."""
    from QSMReproducibilityLib.recon.background import tfi

    shape, voxel = (64, 64, 40), (1.0, 1.0, 2.0)
    x, y, z = _grid(shape, voxel)
    brain = (x / 18) ** 2 + (y / 18) ** 2 + (z / 24) ** 2 <= 1
    bg, _ = sphere_field(shape, voxel, 3.0, 80.0)
    bg = np.roll(bg, 28, axis=0)
    lesion = (x - 15) ** 2 + y**2 + z**2 <= 2.5**2
    local = inversion.forward_field(lesion.astype(np.float32) * 0.8, voxel)
    near = brain & ((x - 15) ** 2 + y**2 + z**2 <= 6**2)
    errors = {}
    for name, method in (("pdf", pdf), ("tfi", tfi)):
        field = method(bg + local, brain, voxel).field
        errors[name] = np.sqrt(np.mean((field[near] - local[near]) ** 2)) / np.sqrt(np.mean(local[near] ** 2))
    assert errors["tfi"] < 0.8 * errors["pdf"], errors


def test_lbv_solves_laplace_inside_the_mask_and_loses_one_voxel():
    """LBV on the same scene: the background is harmonic inside the mask, so Laplace's equation with the
    measured boundary values gives it back; the local field is kept; only the boundary layer is lost."""
    from scipy import ndimage

    from QSMReproducibilityLib.recon.background import lbv

    voxel, r, brain, bg, local = _background_scene()
    result = lbv(bg + local, brain, voxel)
    assert np.array_equal(result.mask, ndimage.binary_erosion(brain, ndimage.generate_binary_structure(3, 1)))
    m = result.mask & (r <= 14)
    err = result.field[m] - local[m]
    assert np.sqrt(np.mean((err - err.mean()) ** 2)) < 0.1 * np.abs(local[m]).max()
    assert np.abs(bg[m]).max() > 2 * np.abs(local[m]).max()


def test_temporal_unwrapping_is_congruent_and_exact():
    rng = np.random.default_rng(1)
    shape, voxel = (48, 48, 16), (1.0, 1.0, 2.0)
    x, y, z = _grid(shape, voxel)
    freq_hz = 350 * np.exp(-((x - 5) ** 2 + y**2) / 200) + 2 * x  # > 1/(2ΔTE): wraps between echoes
    te = np.array([0.00492, 0.00738, 0.00984, 0.0123, 0.01476, 0.01722, 0.01968])
    phi0 = 0.8 + 0.02 * y
    true_phase = phi0[..., None] + 2 * np.pi * freq_hz[..., None] * te
    wrapped = np.angle(np.exp(1j * true_phase)) + 0.01 * rng.standard_normal(true_phase.shape)
    mag = np.ones(true_phase.shape, np.float32)
    unwrapped = unwrap.unwrap_multi_echo(wrapped.astype(np.float32), mag, te, voxel)
    # Exact across echoes: in every voxel the unwrapped phase differs from the truth by one multiple of
    # 2π shared by all echoes (the first echo's own wrap), so the field (the slope over TE) is exact.
    diff = unwrapped - true_phase
    turns = diff[..., :1] / (2 * np.pi)
    assert np.abs(turns - np.round(turns)).max() < 0.02
    assert np.mean(np.abs(diff - diff[..., :1]) < 0.1) > 0.999


def test_laplacian_unwrapping_is_inexact_under_strong_local_fields():
    """The STI-compatible Laplacian method smooths phase: with a strong local source (up to 2.6 rad/voxel,
    still below the π/voxel Nyquist limit) it departs from the true phase, while the congruent method is exact."""
    shape, voxel = (64, 64, 32), (1.0, 1.0, 1.0)
    x, y, z = _grid(shape, voxel)
    true_phase = 20.0 * np.exp(-(x**2 + y**2 + z**2) / 40.0)
    assert np.abs(np.gradient(true_phase)).max() < np.pi
    wrapped = np.angle(np.exp(1j * true_phase)).astype(np.float32)
    lap = unwrap.laplacian_unwrap(wrapped, voxel)
    lap -= np.median(lap - true_phase)
    assert np.abs(lap - true_phase).max() > 0.15
    exact = unwrap.unwrap_spatial(wrapped, voxel)
    exact -= 2 * np.pi * np.round(np.median(exact - true_phase) / (2 * np.pi))
    assert np.abs(exact - true_phase).max() < 1e-4


def test_phantom_field_agrees_with_qsm_forward():
    """Our forward model vs qsm-forward's generate_field (independent code) on the same χ, to 1 %."""
    qsm_forward = pytest.importorskip("qsm_forward")
    from QSMReproducibilityLib import phantom

    rng = np.random.default_rng(0)
    labels, _ = phantom.make_labels((96, 96, 24), phantom.STUDY_VOXEL_MM, rng, "hematoma", ("right",))
    chi = phantom.susceptibility_map(labels, {"right": 0.3}, rng, phantom.STUDY_VOXEL_MM)
    # qsm-forward pads with the corner value (air here); a uniform χ has no field (D(0) = 0), so our
    # zero-padded model of χ − χ_corner is the same object.
    ours = inversion.forward_field(chi - chi[-1, -1, -1], phantom.STUDY_VOXEL_MM, (0, 0, 1))
    theirs = qsm_forward.generate_field(chi.astype(np.float64), voxel_size=list(phantom.STUDY_VOXEL_MM), B0_dir=[0, 0, 1])
    brain = labels > 0
    ours_c, theirs_c = ours - ours[brain].mean(), theirs - theirs[brain].mean()
    rel = np.linalg.norm(ours_c[brain] - theirs_c[brain]) / np.linalg.norm(theirs_c[brain])
    assert rel < 0.01


def _small_case(tmp_path, **kwargs):
    from QSMReproducibilityLib import phantom

    return phantom.simulate_case("T1", "calcification", seed=2, out_dir=tmp_path, shape=(64, 64, 16), **kwargs)


def test_single_echo_reconstructs_and_says_so(tmp_path):
    from QSMReproducibilityLib.io import load_gre
    from QSMReproducibilityLib.recon import pipeline

    gre = load_gre(_small_case(tmp_path, te_s=(0.02,)).anat_dir)
    result = pipeline.reconstruct(gre, pipeline.ReconParams(method="tkd"))
    assert gre.n_echoes == 1 and any("single echo" in note for note in result.notes)
    assert np.isfinite(result.chi_ppm).all() and np.abs(result.chi_ppm).max() > 0


def test_every_stage_reports_progress_and_can_be_cancelled(tmp_path):
    from QSMReproducibilityLib.errors import Cancelled
    from QSMReproducibilityLib.io import load_gre
    from QSMReproducibilityLib.recon import pipeline

    gre = load_gre(_small_case(tmp_path).anat_dir)
    seen = []
    pipeline.reconstruct(gre, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = " ".join(m for _, m in seen)
    for stage in ("unwrapping", "field", "mask", "total-field fit", "iteration"):
        assert stage in messages
    for stop_at in ("unwrapping", "total-field fit", "STAR"):
        with pytest.raises(Cancelled):
            pipeline.reconstruct(gre, progress=lambda f, m, s=stop_at: s not in m)


def test_empty_user_mask_is_refused_and_nothing_is_written(tmp_path):
    from QSMReproducibilityLib.errors import InputError
    from QSMReproducibilityLib.io import save_nifti
    from QSMReproducibilityLib.recon import pipeline

    case = _small_case(tmp_path / "case")
    empty = save_nifti(tmp_path / "empty_mask.nii.gz", np.zeros((64, 64, 16), np.uint8), case.affine)
    out = tmp_path / "qsm.nii.gz"
    with pytest.raises(InputError, match="mask is empty"):
        pipeline.reconstruct_path(case.anat_dir, out, user_mask_path=empty)
    assert not out.exists()


def test_dicom_folder_reconstructs_like_its_nifti(tmp_path):
    """Siemens-style DICOM (phase −4096…4095, ImageType M/P) gives the same χ as the BIDS NIfTI it came from."""
    from gre_dicom import write_dicom_gre

    from QSMReproducibilityLib.io import load_gre, load_volume
    from QSMReproducibilityLib.recon import pipeline

    case = _small_case(tmp_path / "case")
    write_dicom_gre(case.anat_dir, tmp_path / "dicom", {})
    from_dicom = load_gre(tmp_path / "dicom")
    from_nifti = load_gre(case.anat_dir)
    np.testing.assert_allclose(from_dicom.te_s, from_nifti.te_s, atol=1e-5)
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
    nifti = pipeline.reconstruct(from_nifti, pipeline.ReconParams(method="tkd"))
    dicom_mask = pipeline.estimate_field(from_dicom).brain_mask
    # DICOM stores magnitude as integers: BET's outline may move by a voxel here and there.
    assert (dicom_mask ^ nifti.brain_mask).sum() <= 0.005 * nifti.brain_mask.sum()
    # On the same mask, what is left is the phase's 12-bit quantisation.
    chi_dicom = pipeline.reconstruct(from_dicom, pipeline.ReconParams(method="tkd"), user_mask=nifti.brain_mask).chi_ppm
    chi_nifti = nifti.chi_ppm
    labels = load_volume(case.labels_path)[0]
    for side in case.sides:
        lesion = labels == (5 if side == "right" else 6)
        assert chi_dicom[lesion].mean() == pytest.approx(chi_nifti[lesion].mean(), abs=0.01)
    assert np.corrcoef(chi_dicom.ravel(), chi_nifti.ravel())[0, 1] > 0.98


def test_tv_gradient_is_periodic_forward_difference_and_its_adjoint_is_exact():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    g = rng.standard_normal((3, 6, 5, 4)).astype(np.float32)
    voxel = (0.72, 0.72, 2.0)
    expected = np.stack([(np.roll(x, -1, axis=a) - x) / voxel[a] for a in range(3)])
    np.testing.assert_allclose(differences.gradient(x, voxel), expected, atol=1e-5)
    # <Gx, g> = <x, Gᵀg>
    assert (differences.gradient(x, voxel) * g).sum() == pytest.approx((x * differences.gradient_adjoint(g, voxel)).sum(), rel=1e-5)


def test_cli_offers_every_reconstruction_method():
    from QSMReproducibilityLib.cli import build_parser
    from QSMReproducibilityLib.recon import pipeline

    parser = build_parser(with_study_commands=False)
    for method in pipeline.METHODS:
        assert parser.parse_args(["reconstruct", "anat", "-o", "qsm.nii.gz", "--method", method]).method == method
    for background in pipeline.BACKGROUND_METHODS:
        args = parser.parse_args(["reconstruct", "anat", "-o", "qsm.nii.gz", "--background", background])
        assert args.background == background


def test_pdf_background_removal_through_the_pipeline_is_recorded(tmp_path):
    import json

    from QSMReproducibilityLib.recon import pipeline

    case = _small_case(tmp_path / "case")
    out = tmp_path / "qsm.nii.gz"
    result = pipeline.reconstruct_path(case.anat_dir, out, method="tkd", background_method="pdf")
    sidecar = json.loads((tmp_path / "qsm.json").read_text())
    assert sidecar["BackgroundRemoval"]["method"] == "PDF"
    assert np.array_equal(result.local_field_mask, result.brain_mask)  # PDF erodes nothing
    assert np.isfinite(result.chi_ppm).all() and np.abs(result.chi_ppm[result.local_field_mask]).max() > 0


def test_fill_holes_matches_scipy_in_3d_and_per_slice():
    from scipy import ndimage

    from QSMReproducibilityLib.recon.mask import fill_holes

    rng = np.random.default_rng(4)
    for _ in range(10):
        mask = ndimage.binary_opening(rng.random((40, 30, 12)) > 0.35)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        per_slice = np.stack([ndimage.binary_fill_holes(mask[..., k]) for k in range(mask.shape[2])], axis=2)
        np.testing.assert_array_equal(fill_holes(mask, in_plane=True), per_slice)
    # A cavity (a 3-D hole) and a tunnel along the slices (a hole in every slice, open in 3-D).
    block = np.zeros((20, 20, 10), bool)
    block[2:18, 2:18, :] = True
    block[8:11, 8:11, 3:6] = False
    block[13:15, 4:6, :] = False
    filled = fill_holes(block)
    assert filled[8:11, 8:11, 3:6].all() and not filled[13:15, 4:6, :].any()
    assert fill_holes(filled, in_plane=True)[2:18, 2:18, :].all()


def test_unit_weights_take_the_mask_path_with_the_same_result():
    """Without a weight, W is the mask and kept as a boolean (less memory); it must equal explicit ones."""
    shape, voxel = (48, 40, 24), (0.8, 0.8, 1.6)
    field, r = sphere_field(shape, voxel, 5.0, 0.3)
    mask = r <= 14.0
    ones = np.ones(shape, np.float32)
    for solver in (inversion.star_qsm, inversion.admm_inversion, inversion.iterative_tikhonov):
        implicit = solver(field, mask, voxel, iterations=6)
        explicit = solver(field, mask, voxel, iterations=6, weight=ones)
        np.testing.assert_allclose(implicit, explicit, atol=1e-6)
        assert np.abs(implicit).max() > 0.1


def test_user_mask_is_used_and_recorded(tmp_path):
    import json

    from QSMReproducibilityLib.io import save_nifti
    from QSMReproducibilityLib.recon import pipeline

    case = _small_case(tmp_path / "case")
    user = np.zeros((64, 64, 16), np.uint8)
    user[12:52, 12:52, 2:14] = 1
    path = save_nifti(tmp_path / "mask.nii.gz", user, case.affine)
    result = pipeline.reconstruct_path(case.anat_dir, tmp_path / "qsm.nii.gz", method="tkd", user_mask_path=path)
    assert np.array_equal(result.brain_mask, user.astype(bool))
    assert not result.chi_ppm[~user.astype(bool)].any()
    assert json.loads((tmp_path / "qsm.json").read_text())["MaskCandidate"] == "user-supplied"
