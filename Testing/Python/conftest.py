"""Fixtures shared by test modules: the realistic head at the study's matrix, simulated once per run."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def head():
    """The head phantom with its default wall lesions and its GRE (study matrix, 7 echoes, 3 T, seed 7)."""
    from QSMReproducibilityLib import head_phantom as hp
    from QSMReproducibilityLib.io import GreSeries

    phantom = hp.make_head()
    magnitude, phase, _ = hp.simulate_head(phantom, seed=7)
    gre = GreSeries(np.ascontiguousarray(magnitude), np.ascontiguousarray(phase), np.asarray(hp.STUDY_TE_S), 3.0,
                    phantom.affine, source="head phantom")
    return phantom, gre


@pytest.fixture(scope="session")
def head_field(head):
    """The head's field map (default BET mask, unwrapping, echo fit): the input of every background removal."""
    from QSMReproducibilityLib.recon import pipeline

    return pipeline.estimate_field(head[1], pipeline.ReconParams())


@pytest.fixture(scope="session")
def head_default(head_field):
    """The head reconstructed with every default."""
    from QSMReproducibilityLib.recon import pipeline

    return pipeline.invert_field(head_field, pipeline.ReconParams())
