"""The default brain mask on a realistic head: scalp, fat, skull, sinuses and a skull base.

The head (:mod:`QSMReproducibilityLib.head_phantom`) is simulated at the study's matrix, voxel size and
echoes. Its true brain mask gives the best a mask can do; the default reconstruction must come within 10 %
of it, and a mask that takes in the scalp must visibly fail. Deep grey matter is scored as QSM
challenges score it (Marques et al., Magn Reson Med 2021;86:526, "QSM reconstruction challenge 2.0"): the
slope of the reconstructed against the true CSF-referenced means of the nuclei.
"""

import numpy as np
import pytest

from QSMReproducibilityLib.recon import pipeline

from head_support import deep_grey_scores

OUTSIDE_THE_BRAIN = ("scalp_fat", "skin", "skull", "soft_tissue", "fat")


@pytest.fixture(scope="module")
def with_true_mask(head):
    phantom, gre = head
    return pipeline.reconstruct(gre, pipeline.ReconParams(), user_mask=phantom.brain_mask)


@pytest.fixture(scope="module")
def with_default_mask(head_default):
    return head_default


def _nrmse(phantom, result, region):
    """Demeaned NRMSE of χ over ``region`` (χ is defined up to a constant until referenced)."""
    rec = result.chi_ppm[region] - result.chi_ppm[region].mean()
    true = phantom.chi_ppm[region] - phantom.chi_ppm[region].mean()
    return float(np.linalg.norm(rec - true) / np.linalg.norm(true))


def _deep_grey_errors(phantom, result):
    """Slope of reconstructed vs true nuclear means, and their mean absolute error relative to the mean true χ."""
    scores = deep_grey_scores(phantom, result.chi_ppm, result.local_field_mask)
    return scores["slope"], scores["mean_error"]


def test_default_mask_covers_the_brain_and_leaves_out_the_scalp(head, with_default_mask):
    phantom, _ = head
    brain = with_default_mask.brain_mask
    assert "BET" in with_default_mask.notes[0] and "f = 0.5" in with_default_mask.notes[0]
    assert (brain & phantom.brain_mask).sum() / phantom.brain_mask.sum() >= 0.95
    for region in OUTSIDE_THE_BRAIN:
        assert (brain & phantom.regions[region]).sum() <= 0.01 * phantom.regions[region].sum(), region
    assert (brain & ~phantom.brain_mask).sum() <= 0.01 * phantom.brain_mask.sum()


def test_default_reconstruction_is_as_good_as_with_the_true_brain_mask(head, with_true_mask, with_default_mask):
    phantom, _ = head
    region = with_true_mask.local_field_mask & with_default_mask.local_field_mask & phantom.brain_mask
    assert region.sum() >= 0.85 * phantom.brain_mask.sum()
    best = _nrmse(phantom, with_true_mask, region)
    assert _nrmse(phantom, with_default_mask, region) <= 1.10 * best
    slope, error = _deep_grey_errors(phantom, with_default_mask)
    assert slope == pytest.approx(1.0, abs=0.10)
    assert error <= 0.10


def test_a_mask_that_takes_in_the_scalp_fails(head, with_true_mask):
    """A magnitude-threshold candidate joins scalp and brain through the skull base: χ is wrong everywhere."""
    phantom, gre = head
    scalp = pipeline.reconstruct(gre, pipeline.ReconParams(mask_method="threshold", mask_index=2))
    assert (scalp.brain_mask & phantom.regions["scalp_fat"]).sum() >= 0.5 * phantom.regions["scalp_fat"].sum()
    region = with_true_mask.local_field_mask & scalp.local_field_mask & phantom.brain_mask
    assert _nrmse(phantom, scalp, region) > 3 * _nrmse(phantom, with_true_mask, region)
    slope, error = _deep_grey_errors(phantom, scalp)
    assert abs(slope - 1.0) > 0.2 or error > 0.2


def test_default_mask_and_vsharp_erosion_keep_both_vertebral_arteries(head, with_default_mask):
    """The study's lesions sit on the V4 segments at the skull base, where a brain mask ends."""
    phantom, _ = head
    for side in ("v4_right", "v4_left"):
        artery = phantom.regions[side]
        assert artery.sum() > 100
        assert (artery & with_default_mask.brain_mask).sum() >= 0.98 * artery.sum(), side
        assert (artery & with_default_mask.local_field_mask).sum() >= 0.95 * artery.sum(), side
