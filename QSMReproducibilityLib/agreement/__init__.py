"""Agreement statistics for repeated readings and the design of the QSM reproducibility study.

Estimators, one statistical family per module (each returns a small frozen result object with ``.value``,
``.ci_low`` and ``.ci_high``):

- :func:`icc` (:mod:`.intraclass`) -- intraclass correlation, the six forms of McGraw & Wong (1996) with
  their exact F-based confidence intervals (Satterthwaite degrees of freedom for the absolute-agreement
  forms).
- :func:`lin_ccc` (:mod:`.concordance`) -- Lin's (1989) concordance correlation coefficient with the
  Fisher-z interval of Lin (1989, 2000), as computed by ``epiR::epi.ccc`` and ``DescTools::CCC``.
- :func:`overall_ccc` (:mod:`.concordance`) -- Barnhart, Haber & Song's (2002) overall CCC for more than two
  readings, with a jackknife interval on Fisher's z scale.
- :func:`wcv` (:mod:`.variation`) -- within-subject coefficient of variation in percent (root-mean-square or
  pooled definition) with a bias-corrected and accelerated (BCa) bootstrap interval over subjects.
- :func:`bland_altman` (:mod:`.limits_of_agreement`) -- bias and 95 % limits of agreement with their
  confidence intervals (Bland & Altman 1986, 1999).

Study design (:func:`analyze_study`, :mod:`.study`): a long feature table
(:mod:`QSMReproducibilityLib.feature_table`) is turned into the five comparisons of the study per lesion
type and into Tables 1-3 of Park et al., Sci Rep 2023.
"""

from ..feature_table import REQUIRED_COLUMNS, validate_feature_table
from .concordance import CCCResult, lin_ccc, overall_ccc
from .intraclass import ICC_FORMS, ICCResult, icc
from .limits_of_agreement import BlandAltmanResult, bland_altman
from .study import COMPARISONS, Comparison, StudyAgreement, analyze_study
from .variation import WCV_BOOTSTRAP_RESAMPLES, WCV_BOOTSTRAP_SEED, WCVResult, shift_to_one_sign, wcv

__all__ = [
    "ICC_FORMS",
    "COMPARISONS",
    "REQUIRED_COLUMNS",
    "ICCResult",
    "CCCResult",
    "WCVResult",
    "BlandAltmanResult",
    "Comparison",
    "StudyAgreement",
    "icc",
    "lin_ccc",
    "overall_ccc",
    "wcv",
    "WCV_BOOTSTRAP_RESAMPLES",
    "WCV_BOOTSTRAP_SEED",
    "shift_to_one_sign",
    "bland_altman",
    "validate_feature_table",
    "analyze_study",
]
