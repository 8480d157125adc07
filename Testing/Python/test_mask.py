"""Brain masks: BET (Smith 2002) against closed-form geometry, the noise model, and the CLI's choices."""

import json

import numpy as np
import pytest

from QSMReproducibilityLib.recon import bet, mask


def _ball_image(shape, voxel, radius_mm, *, sigma=0.02, seed=0, shell=None):
    """A bright ball (1.0) in Rayleigh noise; ``shell=(inner, outer, value)`` adds a concentric shell."""
    axes = [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    truth = (r <= radius_mm).astype(np.float32)
    image = truth.copy()
    if shell is not None:
        inner, outer, value = shell
        image[(r > inner) & (r <= outer)] = value
    rng = np.random.default_rng(seed)
    noisy = np.abs(image + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    return noisy.astype(np.float32), r


def test_icosphere_is_a_closed_outward_surface():
    vertices, faces = bet.icosphere(4)
    edges = {tuple(sorted(e)) for f in faces for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert len(vertices) == 10 * 4**4 + 2 == 2562
    assert len(vertices) - len(edges) + len(faces) == 2  # Euler characteristic of a sphere
    normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    assert (np.einsum("ij,ij->i", normals, vertices[faces].mean(axis=1)) > 0).all()


def test_bet_finds_a_ball_of_known_radius():
    """On a uniform ball the surface stops at the ball's edge: volume within 5 % of 4/3·π·R³."""
    voxel, radius = (1.0, 1.0, 2.0), 40.0
    image, r = _ball_image((112, 112, 56), voxel, radius)
    (found,) = bet.bet_masks(image, voxel, (0.5,))
    expected = 4 / 3 * np.pi * radius**3 / np.prod(voxel)
    assert found.sum() == pytest.approx(expected, rel=0.05)
    truth = r <= radius
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.97


def test_bet_leaves_out_a_bright_scalp_behind_a_dark_skull():
    """Ball (brain) inside a dark shell (skull) inside a brighter shell (scalp), joined by a cord through a
    hole in the skull, as brain and scalp are joined at the skull base: BET keeps to the brain at every
    threshold of the study's range, where a magnitude threshold takes the scalp in."""
    voxel, radius, shape = (1.0, 1.0, 2.0), 38.0, (128, 128, 64)
    image, r = _ball_image(shape, voxel, radius, shell=(radius + 7.0, radius + 13.0, 1.6))
    axes = [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    cord = (x**2 + y**2 <= 8.0**2) & (z < 0)
    image[cord & (r > radius)] = 1.0
    truth = r <= radius
    scalp = (r > radius + 6.0) & ~cord
    fractions = (0.3, 0.5, 0.7)
    for f, found in zip(fractions, bet.bet_masks(image, voxel, fractions)):
        assert (found & scalp).sum() == 0, f"f = {f} reaches the scalp"
        assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.95
    threshold = mask.threshold_mask(mask.smoothed_magnitude(image, voxel), 0.3)
    assert (threshold & scalp).sum() > 0.5 * ((r > radius + 7.0) & (r <= radius + 13.0) & ~cord).sum()


def test_higher_fractional_threshold_gives_smaller_brain():
    """Smith 2002: larger f, smaller brain outline (on a ball whose edge is blurred over several mm)."""
    from scipy import ndimage

    voxel = (1.0, 1.0, 2.0)
    image, _ = _ball_image((112, 112, 56), voxel, 40.0, sigma=0.01)
    image = ndimage.gaussian_filter(image, (3.0, 3.0, 1.5))
    volumes = [m.sum() for m in bet.bet_masks(image, voxel, (0.2, 0.5, 0.8))]
    assert volumes[0] > volumes[1] > volumes[2]


def test_noise_sd_of_a_rayleigh_background():
    """σ of complex Gaussian noise is recovered from the magnitude background (Rayleigh median σ·√(2 ln 2))."""
    sigma = 0.03
    image, _ = _ball_image((96, 96, 48), (1.0, 1.0, 2.0), 30.0, sigma=sigma, seed=3)
    assert mask.noise_sd(image) == pytest.approx(sigma, rel=0.05)
    # A background zeroed by the exporter has no noise to measure: no phase-quality masking then.
    zeroed = np.where(image > 0.5, image, 0).astype(np.float32)
    assert mask.noise_sd(zeroed) == 0.0 and mask.signal_mask(zeroed).sum() == (zeroed > 0).sum()


def test_candidates_are_the_nine_fractional_thresholds_with_a_documented_default():
    assert mask.candidate_fractions("bet") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert mask.candidate_fractions("bet")[mask.default_index("bet")] == 0.5  # FSL BET's default
    assert len(mask.candidate_fractions("threshold")) == 9
    from QSMReproducibilityLib.errors import InputError

    with pytest.raises(InputError, match="unknown mask method"):
        mask.candidate_fractions("otsu")


def test_cli_records_the_mask_and_writes_the_preview(tmp_path):
    """`--mask-preview` writes the nine candidates as a PNG; the sidecar records method, candidate and f."""
    from PIL import Image

    from QSMReproducibilityLib import phantom
    from QSMReproducibilityLib.cli import main

    case = phantom.simulate_case("T1", "hematoma", seed=4, out_dir=tmp_path / "case", shape=(64, 64, 16))
    out = tmp_path / "out" / "qsm.nii.gz"
    assert main(["reconstruct", str(case.anat_dir), "-o", str(out), "--method", "tkd",
                 "--mask-preview", str(tmp_path / "out" / "masks.png")]) == 0
    sidecar = json.loads((tmp_path / "out" / "qsm.json").read_text())
    assert sidecar["MaskMethod"] == "BET (Smith 2002)"
    assert sidecar["MaskCandidate"] == 4 and sidecar["MaskFractionalThreshold"] == 0.5
    assert sidecar["MaskCandidateFractions"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    with Image.open(tmp_path / "out" / "masks.png") as png:
        assert png.format == "PNG" and png.size[0] > 9 * 150
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["masks.png", "qsm.json", "qsm.nii.gz"]
    # What a study records when this QSM is added, from the CLI or the Slicer panel alike.
    from QSMReproducibilityLib.recon.pipeline import reconstruction_record

    record = reconstruction_record(out)
    assert record["method"] == "tkd" and record["background"].startswith("total-field fit")
    assert record["mask"] == "mask candidate 4: BET, fractional intensity threshold f = 0.5"
    assert reconstruction_record(tmp_path / "case" / "truth" / "chi.nii.gz") is None  # no sidecar: nothing claimed

    assert main(["reconstruct", str(case.anat_dir), "-o", str(tmp_path / "thr.nii.gz"), "--method", "tkd",
                 "--mask-method", "threshold", "--mask-index", "2"]) == 0
    sidecar = json.loads((tmp_path / "thr.json").read_text())
    assert sidecar["MaskMethod"] == "magnitude threshold" and sidecar["MaskThresholdFraction"] == 0.2


def test_cli_refuses_a_mask_index_out_of_range_and_writes_nothing(tmp_path, capsys):
    from QSMReproducibilityLib import phantom
    from QSMReproducibilityLib.cli import main

    case = phantom.simulate_case("T1", "hematoma", seed=4, out_dir=tmp_path / "case", shape=(48, 48, 12))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["reconstruct", str(case.anat_dir), "-o", str(out / "qsm.nii.gz"), "--mask-index", "9",
                 "--mask-preview", str(out / "masks.png")]) == 2
    assert "mask index 9 out of range" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_small_signal_voids_stay_in_the_mask_and_large_ones_do_not():
    """A 4 mm calcification with no signal is kept (its χ is what is measured); a 20 mm air pocket is not."""
    voxel, radius, shape = (1.0, 1.0, 2.0), 38.0, (112, 112, 56)
    axes = [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    calcification = (x - 12) ** 2 + y**2 + z**2 <= 2.0**2
    pocket = (x + 12) ** 2 + y**2 + z**2 <= 10.0**2
    image, r = _ball_image(shape, voxel, radius, seed=5)
    image[calcification | pocket] = np.abs(image[calcification | pocket] - 1.0)  # noise only
    candidates = mask.candidate_masks(image, voxel, indices=[4])
    found = candidates.masks[4]
    assert found[calcification].all()
    assert not found[(x + 12) ** 2 + y**2 + z**2 <= 8.0**2].any()
    assert found[(r <= radius - 3) & ~pocket].mean() > 0.999


def test_no_noise_estimate_without_a_background_of_air():
    """A field of view filled with tissue has no air to measure noise in: no voxel is dropped for low signal."""
    rng = np.random.default_rng(2)
    tissue = (0.5 + 0.5 * rng.random((64, 64, 20))).astype(np.float32)
    tissue[:, :, :4] = 0.05  # a dark band (bone), not noise
    assert mask.noise_sd(tissue) == 0.0
