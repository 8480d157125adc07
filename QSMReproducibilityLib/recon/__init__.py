"""QSM reconstruction from multi-echo GRE, one module per step family.

unwrap -> echoes (field fit) -> mask -> background (total-field fit, V-SHARP, PDF or LBV) -> inversion (dipole);
χ is referenced to each reading's CSF later, in :mod:`QSMReproducibilityLib.radiomics`.
Shared by the steps, none of which imports another: ``kernels`` (dipole and SMV kernels, FFT grids, the mask's
bounding box), ``differences`` (the periodic gradient the TV and STAR inversions regularise with) and ``solvers``
(the conjugate-gradient solver that the background fits and the iterative Tikhonov inversion share).
``pipeline`` chains them for a :class:`~QSMReproducibilityLib.io.GreSeries`.
"""

GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478518e6
"""Proton gyromagnetic ratio γ/2π in Hz/T (CODATA 2018)."""


def hz_per_ppm(b0_tesla: float) -> float:
    """Frequency offset in Hz produced by a 1 ppm field perturbation at field strength ``b0_tesla``."""
    return GYROMAGNETIC_RATIO_HZ_PER_T * b0_tesla * 1e-6
