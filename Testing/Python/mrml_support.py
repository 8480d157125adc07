"""Real MRML for the tests, from Kitware's ``slicer-core`` wheel (no Qt, no application).

Importing this skips the importing test module where the wheel is absent, and puts the Slicer module's
folder on the path so that its MRML package imports as Slicer loads it.
"""

import sys
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel (pip install slicer-core) provides MRML")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("this 'slicer' package has no MRML classes", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "QSMReproducibility"))
import QSMReproducibilityMRML as mrml  # noqa: E402

__all__ = ["REPO", "mrml", "slicer"]
