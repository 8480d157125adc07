"""The simulated observers (QSMReproducibilityLib.observers) against the closed form of their reading model.

A reader judges each voxel next to the rim as inside when its contrast plus Gaussian perceptual noise of SD
σ reaches the edge level e. On a map whose lesion has contrast 1 and whose surroundings have contrast 0, a
voxel just outside is therefore taken in with probability 1 − Φ(e/σ) and one just inside is left out with
probability Φ((e − 1)/σ); voxels further from the rim are never in doubt.
"""

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import norm

from QSMReproducibilityLib.observers import ObserverProfile, outline_lesion, simulate_reading
from QSMReproducibilityLib.phantom import CSF, LESION_LABEL

EDGE, SIGMA = 0.4, 0.25


def _profile(**changes):
    def both(value):
        return {"hematoma": value, "calcification": value}

    values = dict(edge_level=both(EDGE), edge_level_sd=both(0.0), second_reading_shift=both(0.0),
                  boundary_sd=both(SIGMA), end_slice=both(0.0))
    values.update(changes)
    return ObserverProfile("T", **values)


def _slab_lesion(sign: float):
    """A 40 x 40-voxel lesion on 4 slices of a flat map: χ = sign·0.3 ppm inside, 0 outside."""
    truth = np.zeros((60, 60, 10), bool)
    truth[10:50, 10:50, 3:7] = True
    return truth, np.where(truth, sign * 0.3, 0.0)


@pytest.mark.parametrize("lesion_type, sign", [("hematoma", 1.0), ("calcification", -1.0)])
def test_rim_voxels_are_taken_in_or_left_out_as_the_reading_model_says(lesion_type, sign):
    truth, qsm = _slab_lesion(sign)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    outside_rim = ndimage.binary_dilation(truth, in_plane) & ~truth
    inside_rim = truth & ~ndimage.binary_erosion(truth, in_plane)
    deep = ndimage.binary_erosion(truth, in_plane, iterations=2)
    added, missed, n_out, n_in = 0, 0, 0, 0
    rng = np.random.default_rng(5)
    for _ in range(20):
        drawn = outline_lesion(qsm, truth, lesion_type, _profile(), 1, rng)
        assert drawn[deep].all()  # further than a voxel from the rim: never in doubt
        assert not (drawn & ~ndimage.binary_dilation(truth, in_plane)).any()  # at most one voxel beyond it
        added += int((drawn & outside_rim).sum())
        missed += int((~drawn & inside_rim).sum())
        n_out += int(outside_rim.sum())
        n_in += int(inside_rim.sum())
    p_add, p_miss = 1 - norm.cdf(EDGE / SIGMA), norm.cdf((EDGE - 1) / SIGMA)
    # binomial standard errors over ~12,000 and ~12,800 voxel judgements: 4 SE is a loose bound
    assert added / n_out == pytest.approx(p_add, abs=4 * np.sqrt(p_add * (1 - p_add) / n_out))
    assert missed / n_in == pytest.approx(p_miss, abs=4 * np.sqrt(p_miss * (1 - p_miss) / n_in))


def test_a_lower_edge_level_outlines_more_of_a_lesion_that_fades_at_its_margin():
    # contrast falls linearly from 1 at the centre column to 0.2 at the lesion's edge (10 voxels away)
    truth = np.zeros((40, 40, 6), bool)
    truth[10:31, 15:25, 2:4] = True
    profile = 1 - 0.8 * np.abs(np.arange(40) - 20)[:, None, None] / 10.0
    qsm = np.where(truth, 0.3 * profile, 0.0)
    quiet = {"hematoma": 0.0, "calcification": 0.0}
    rng = np.random.default_rng(1)
    tight = outline_lesion(qsm, truth, "hematoma", _profile(edge_level={"hematoma": 0.7}, boundary_sd=quiet), 1, rng)
    generous = outline_lesion(qsm, truth, "hematoma", _profile(edge_level={"hematoma": 0.3}, boundary_sd=quiet), 1, rng)
    # without perceptual noise the rim is exactly where the contrast, relative to its 90th percentile over the
    # lesion, crosses the edge level
    relative = (profile / np.percentile(np.broadcast_to(profile, truth.shape)[truth], 90))
    expected_tight = truth & (np.broadcast_to(relative, truth.shape) >= 0.7)
    assert np.array_equal(tight, expected_tight)
    assert generous.sum() > tight.sum()
    assert qsm[generous].mean() < qsm[tight].mean()


def test_a_reading_gives_each_lesion_and_a_csf_roi_inside_the_ventricle():
    labels = np.zeros((60, 60, 10), np.int16)
    labels[5:25, 5:25, 2:8] = CSF
    labels[40:46, 40:44, 4:6] = LESION_LABEL["left"]
    qsm = np.where(labels == LESION_LABEL["left"], -0.2, 0.0)
    masks = simulate_reading(qsm, labels, "calcification", ("left",), _profile(), (0.72, 0.72, 2.0),
                             np.random.default_rng(0), reading=2)
    assert set(masks) == {"lesion_left", "csf"}
    assert masks["csf"].any() and (labels[masks["csf"]] == CSF).all()
    assert masks["lesion_left"].any()
