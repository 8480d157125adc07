"""Phase in the units users bring it in, and the field strength.

Expected values come from the units' definitions (Siemens stores −4096…4095 for −π…π, 12-bit exports
0…4095, a rescaled export maps its range linearly), from the phantom's true susceptibility, and from an
analytic field; not from the code under test.
"""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib.errors import InputError
from QSMReproducibilityLib.io import GreSeries, load_gre, load_nifti_gre, phase_scaling, phase_to_radians
from QSMReproducibilityLib.phantom import CSF, LESION_LABEL, simulate_case
from QSMReproducibilityLib.recon import hz_per_ppm
from QSMReproducibilityLib.recon.pipeline import estimate_field, reconstruct_path

from cli_driver import qsmrepro


def wrapped(phi):
    return np.angle(np.exp(1j * np.asarray(phi, np.float64)))


# ---------------------------------------------------------------------------------------------------
# auto, case by case


RNG = np.random.default_rng(7)
RADIANS = RNG.uniform(-np.pi, np.pi, 4000)
RADIANS[:2] = (-np.pi, np.pi)  # a head's phase, noise in the air included, fills the whole turn
SIEMENS = np.round(RADIANS / np.pi * 4096).clip(-4096, 4095)
TWELVE_BIT = np.round((RADIANS + np.pi) / (2 * np.pi) * 4096).clip(0, 4095)


@pytest.mark.parametrize("label, stored, units, expected_rad, warns", [
    ("radians in (−π, π]", RADIANS, "radians", RADIANS, False),
    ("radians in [0, 2π)", np.mod(RADIANS, 2 * np.pi), "radians", RADIANS, False),
    ("Siemens −4096…4095", SIEMENS, "siemens", SIEMENS * np.pi / 4096, True),
    ("12-bit 0…4095", TWELVE_BIT, "0-4095", TWELVE_BIT * 2 * np.pi / 4096 - np.pi, True),
    ("12-bit 0…4096", np.append(TWELVE_BIT, 4096), "0-4095", np.append(TWELVE_BIT, 4096) * 2 * np.pi / 4096 - np.pi,
     True),
    ("scaled to ±0.004", RADIANS * 0.004 / np.pi, "rescaled", RADIANS, True),
    ("0…600", (RADIANS + np.pi) / (2 * np.pi) * 600, "rescaled", RADIANS, True),
])
def test_auto_reads_each_range_as_the_tools_of_the_field_do(label, stored, units, expected_rad, warns, caplog):
    with caplog.at_level(logging.WARNING, logger="QSMReproducibilityLib.io"):
        scaling = phase_scaling(stored.astype(np.float32), "phase.nii.gz", "auto")
        result = phase_to_radians(stored.astype(np.float32), "phase.nii.gz")
    assert scaling.units == units, label
    assert result.dtype == np.float32 and result.min() >= -np.pi - 1e-6 and result.max() <= np.pi + 1e-6
    np.testing.assert_allclose(wrapped(result - expected_rad), 0, atol=2e-5)
    messages = [r.getMessage() for r in caplog.records]
    if warns:  # one line naming the file, the range found and the scaling used
        assert messages and all("\n" not in m and "phase.nii.gz" in m for m in messages)
        lo, hi = float(stored.min()), float(stored.max())
        assert f"{lo:.6g}…{hi:.6g}" in messages[0]
        assert any(s in messages[0] for s in ("π/4096", "2π/4096", "onto [−π, π)"))
    else:
        assert messages == []


def test_a_narrow_phase_is_rescaled_unless_the_user_says_radians(caplog):
    narrow = np.linspace(-0.5, 0.5, 101).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        assert phase_scaling(narrow, "p.nii", "auto").units == "rescaled"
    assert "does not span 2π" in caplog.text and "--phase-units radians" in caplog.text
    np.testing.assert_array_equal(phase_to_radians(narrow, "p.nii", "radians"), narrow)
    np.testing.assert_allclose(phase_to_radians(narrow, "p.nii", "rescale"), narrow * 2 * np.pi, atol=1e-5)
    np.testing.assert_allclose(phase_to_radians(SIEMENS[:50], "p.nii", "siemens"), SIEMENS[:50] * np.pi / 4096,
                               rtol=1e-6)
    with pytest.raises(InputError, match="p.nii: phase values .* outside the Siemens range"):
        phase_scaling(np.array([-9000.0, 9000.0]), "p.nii", "siemens")
    with pytest.raises(InputError, match="p.nii: the phase is 0.5 everywhere"):
        phase_scaling(np.full(10, 0.5), "p.nii", "auto")
    with pytest.raises(InputError, match="unknown phase units 'degrees'"):
        phase_scaling(narrow, "p.nii", "degrees")


# ---------------------------------------------------------------------------------------------------
# The same phantom phase in every unit gives the same χ


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    case = simulate_case("U1", "hematoma", seed=3, out_dir=root / "raw", shape=(48, 48, 12))
    files = sorted(case.anat_dir.glob("*_part-mag_MEGRE.nii"))
    magnitude = np.stack([np.asarray(nib.load(f).dataobj) for f in files], -1)
    phase = np.stack([np.asarray(nib.load(str(f).replace("part-mag", "part-phase")).dataobj) for f in files], -1)
    labels = np.asarray(nib.load(case.labels_path).dataobj).astype(int)
    nib.save(nib.Nifti1Image(magnitude.astype(np.float32), case.affine), root / "mag.nii.gz")
    nib.save(nib.Nifti1Image(((labels > 0) & (labels != 7)).astype(np.uint8), case.affine), root / "mask.nii.gz")
    return root, case, phase, labels


STORED = {
    "radians": lambda phi: phi.astype(np.float32),
    "siemens": lambda phi: np.round(phi / np.pi * 4096).clip(-4096, 4095).astype(np.int16),
    "scaled ±0.004": lambda phi: (phi * 0.004 / np.pi).astype(np.float32),
    "shifted 0…2π": lambda phi: np.mod(phi, 2 * np.pi).astype(np.float32),
}


def test_the_same_phase_in_every_unit_gives_the_same_chi(phantom):
    root, case, phase, labels = phantom
    chi, sidecars = {}, {}
    for name, store in STORED.items():
        path = root / f"phase_{name.split()[0]}.nii.gz"
        nib.save(nib.Nifti1Image(store(phase), case.affine), path)
        out = root / f"qsm_{name.split()[0]}.nii.gz"
        result = reconstruct_path(magnitude=[root / "mag.nii.gz"], phase=[path], te_s=list(case.te_s), b0_tesla=3.0,
                                  qsm_out=out, user_mask_path=root / "mask.nii.gz")
        chi[name] = result.chi_ppm
        sidecars[name] = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    brain = nib.load(root / "mask.nii.gz").get_fdata() > 0
    for name in STORED:
        assert np.abs(chi[name] - chi["radians"])[brain].max() < 1e-3, name
    # The reference is right: the lesion's χ relative to CSF against the phantom's truth.
    side = case.sides[0]
    lesion = chi["radians"][labels == LESION_LABEL[side]].mean() - chi["radians"][labels == CSF].mean()
    assert lesion == pytest.approx(case.lesion_chi_ppm[side], rel=0.4)
    assert [sidecars[n]["PhaseUnits"] for n in STORED] == ["radians", "siemens", "rescaled", "radians"]
    assert sidecars["siemens"]["PhaseScaling"]["radians_per_unit"] == pytest.approx(np.pi / 4096)
    assert sidecars["scaled ±0.004"]["PhaseScaling"]["radians_per_unit"] == pytest.approx(np.pi / 0.004, rel=1e-3)
    assert all(s["PhaseScaling"]["requested"] == "auto" for s in sidecars.values())


def test_radians_insisted_on_gives_the_true_field_of_a_narrow_phase(tmp_path):
    """A noise-free phase of a 4 Hz field spans far less than 2π: auto rescales it (and warns), while
    --phase-units radians fits the analytic field."""
    shape, te_s = (20, 18, 10), (0.005, 0.010, 0.015)
    i, j, k = np.indices(shape)
    field_hz = 4.0 * np.exp(-(((i - 9) / 4.0) ** 2 + ((j - 8) / 4.0) ** 2 + ((k - 5) / 3.0) ** 2))
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    mag = np.ones(shape + (3,), np.float32)
    phase = np.stack([0.3 + 2 * np.pi * field_hz * te for te in te_s], -1).astype(np.float32)
    nib.save(nib.Nifti1Image(mag, affine), tmp_path / "mag.nii")
    nib.save(nib.Nifti1Image(phase, affine), tmp_path / "pha.nii")
    mask = np.ones(shape, bool)
    fields = {}
    for units in ("radians", "auto"):
        gre = load_nifti_gre([tmp_path / "mag.nii"], [tmp_path / "pha.nii"], te_s, 3.0, phase_units=units)
        fieldmap = estimate_field(gre, user_mask=mask)
        fields[units] = fieldmap.total_field_ppm[tuple(slice(0, n) for n in shape)] * hz_per_ppm(3.0)
    np.testing.assert_allclose(fields["radians"], field_hz, atol=1e-3)
    assert np.abs(fields["auto"] - field_hz).max() > 1.0  # auto cannot know: it says so in its warning


# ---------------------------------------------------------------------------------------------------
# Field strength


def test_field_strength_outside_0_1_to_21_tesla_is_refused_by_the_library(phantom):
    root, case, phase, labels = phantom
    nib.save(nib.Nifti1Image(phase.astype(np.float32), case.affine), root / "pha.nii.gz")
    for b0 in (-3, 0.0, 25, float("nan")):
        with pytest.raises(InputError, match=r"--b0 .* (is outside 0\.1–21 T|T is outside)"):
            load_nifti_gre([root / "mag.nii.gz"], [root / "pha.nii.gz"], case.te_s, b0)
    gre = load_gre(case.anat_dir)
    with pytest.raises(InputError, match="B0 -3 T is outside"):
        GreSeries(gre.magnitude, gre.phase_rad, gre.te_s, -3.0, gre.affine, source="scene volumes")


def test_cli_warns_in_one_line_when_phase_is_rescaled_or_3_tesla_assumed(phantom, tmp_path):
    root, case, phase, labels = phantom
    scaled = tmp_path / "phase_scaled.nii.gz"
    nib.save(nib.Nifti1Image((phase * 0.004 / np.pi).astype(np.float32), case.affine), scaled)
    out = tmp_path / "qsm.nii.gz"
    proc = qsmrepro("reconstruct", "--magnitude", root / "mag.nii.gz", "--phase", scaled, "--te", *case.te_s,
                    "--mask", root / "mask.nii.gz", "-o", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("WARNING: ") for line in lines), proc.stderr
    rescaled = next(line for line in lines if "phase range" in line)
    stored = np.asarray(nib.load(scaled).dataobj)
    assert str(scaled) in rescaled and f"{stored.min():.6g}…{stored.max():.6g}" in rescaled and "× 785.4" in rescaled
    assumed = next(line for line in lines if "field strength" in line)
    assert "3 T assumed" in assumed and str(root) in assumed
    assert json.loads((tmp_path / "qsm.json").read_text())["MagneticFieldStrength"] == 3.0

    # Explicit units and field strength: nothing to warn about.
    proc = qsmrepro("reconstruct", "--magnitude", root / "mag.nii.gz", "--phase", scaled, "--te", *case.te_s,
                    "--phase-units", "rescale", "--b0", "3", "--mask", root / "mask.nii.gz",
                    "-o", tmp_path / "qsm2.nii.gz")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads((tmp_path / "qsm2.json").read_text())["PhaseScaling"]["requested"] == "rescale"
