"""QSMReproducibilityLib: QSM reconstruction, blinded repeat readings, radiomics and agreement
statistics for QSM reproducibility studies.

Plain Python, importable without 3D Slicer. The flow reads in one direction:
io -> recon -> readings -> radiomics -> agreement -> report; ``phantom`` makes synthetic studies.
"""

__version__ = "0.1.0"
