"""The head phantom against anatomy, an independent field simulator (qsm-forward) and MR physics.

Reference numbers are written here, not taken from the code under test: adult intracranial volume and
head size, calvarial thickness, vertebral artery calibre and the height of the vertebrobasilar junction
from anatomy texts; the proton gyromagnetic ratio (CODATA 2018) and the fat–water shift (Yu et al. 2008,
MRM 60:1122) from the literature; the dipole field from qsm-forward.
"""

import json
import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from QSMReproducibilityLib import head_phantom as hp
from QSMReproducibilityLib.io import b0_dir_from_affine, load_gre, voxel_size_from_affine

from head_support import write_head_case

GAMMA_BAR_HZ_PER_T = 42.577478518e6  # proton γ/2π, CODATA 2018
FAT_SHIFT_PPM = -3.4  # main (methylene) fat peak relative to water
COARSE_VOXEL_MM = (2.88, 2.88, 4.0)
COARSE_SHAPE = (80, 60, 35)  # the study's field of view at 4× the voxel size


@pytest.fixture(scope="module")
def head():
    return hp.make_head()


@pytest.fixture(scope="module")
def signal(head):
    return hp.simulate_head(head)


def _per_side(head, mask):
    x = np.broadcast_to(head.coordinates_mm()[0], head.shape)
    return mask & (x > 0), mask & (x < 0)  # RAS: patient right at positive x


def _z(head):
    return np.broadcast_to(head.coordinates_mm()[2], head.shape)


def test_study_grid_has_230_mm_along_ap_and_b0_along_the_slab_normal(head):
    assert head.shape == (320, 240, 70)
    np.testing.assert_allclose(voxel_size_from_affine(head.affine), (0.72, 0.72, 2.0))
    rotation = head.affine[:3, :3] / voxel_size_from_affine(head.affine)
    assert abs(rotation[1, 0]) == 1 and abs(rotation[0, 1]) == 1 and rotation[2, 2] == 1  # i→y, j→x, k→z
    assert head.shape[0] * 0.72 == pytest.approx(230.4)
    np.testing.assert_allclose(np.abs(b0_dir_from_affine(head.affine)), (0, 0, 1), atol=1e-12)
    z = head.coordinates_mm()[2].ravel()
    assert z.min() <= hp.FORAMEN_MAGNUM_Z_MM - 20 and z.max() >= 50
    assert head.regions["posterior_horns"].any() and head.regions["v4_right"].any()


def _coarse_pair():
    """A coarse slab phantom and one whole-body grid at the same voxel size whose voxels coincide."""
    small = hp.make_head(COARSE_SHAPE, COARSE_VOXEL_MM)
    # z −455 … +113, x ±233, y −151 … +131: the whole body, shoulders included.
    big = hp.make_head((98, 162, 143), COARSE_VOXEL_MM, z_offset_mm=-171.0)
    offset = np.linalg.inv(big.affine) @ small.affine
    np.testing.assert_allclose(offset[:3, :3], np.eye(3), atol=1e-9)
    start = np.round(offset[:3, 3]).astype(int)
    np.testing.assert_allclose(offset[:3, 3], start, atol=1e-6)
    box = tuple(slice(s, s + n) for s, n in zip(start, small.shape))
    assert np.array_equal(big.labels[box], small.labels)
    return small, big, box


def _detrended(field, mask):
    """Field minus its least-squares plane over the mask."""
    idx = np.nonzero(mask)
    basis = np.stack([np.ones(idx[0].size)] + [i.astype(float) for i in idx], axis=1)
    coef, *_ = np.linalg.lstsq(basis, field[idx].astype(float), rcond=None)
    return field[idx] - basis @ coef


def test_total_field_agrees_with_qsm_forward():
    """The slab's field (full-resolution part + coarse outer part) vs qsm-forward on the whole body's χ.

    qsm-forward pads the grid to twice its size with the corner value (air), so the body's periodic
    copies add a near-linear field of a few % across the brain, which ours removes; a plane fitted over
    the brain absorbs it. What remains must agree to about 1 %.
    """
    qsm_forward = pytest.importorskip("qsm_forward")
    small, big, box = _coarse_pair()
    ours = hp.dipole_field_ppm(small)
    theirs = qsm_forward.generate_field(big.chi_ppm.astype(np.float64), voxel_size=list(COARSE_VOXEL_MM),
                                        B0_dir=[0, 0, 1])[box]
    brain = small.brain_mask
    a, b = _detrended(ours, brain), _detrended(theirs, brain)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.015
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.006  # ppm, under 1 Hz at 3 T
    assert np.std(b) > 0.1  # the comparison has a field to compare


def test_oblique_b0_field_agrees_with_qsm_forward():
    """An oblique B0 (voxel frame) on the full-resolution part of the field, against qsm-forward.

    With an oblique B0 the FFT dipole kernel is discontinuous across the edge of k-space, so sharp edges
    ring into fields that depend on the grid (both codes share this); the coarse outer part is therefore
    left out here and the same χ samples go to both codes. They are padded with air to twice their size
    first, so that qsm-forward's periodic copies lie far enough not to matter.
    """
    qsm_forward = pytest.importorskip("qsm_forward")
    import dataclasses

    small = hp.make_head(COARSE_SHAPE, COARSE_VOXEL_MM)
    src = small.sources
    near_only = dataclasses.replace(small, sources=dataclasses.replace(src, far_chi=np.zeros_like(src.far_chi)))
    b0 = np.array([0.1, -0.15, 1.0]) / np.linalg.norm([0.1, -0.15, 1.0])
    ours = hp.dipole_field_ppm(near_only, b0)
    padded = np.zeros([2 * n for n in src.near_chi.shape])
    inner = tuple(slice(n // 2, n // 2 + n) for n in src.near_chi.shape)
    padded[inner] = src.near_chi
    theirs = qsm_forward.generate_field(padded, voxel_size=list(COARSE_VOXEL_MM), B0_dir=list(b0))[inner]
    theirs = theirs[src.slab_in_near]
    brain = small.brain_mask
    a, b = _detrended(ours, brain), _detrended(theirs, brain)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.01
    straight = _detrended(hp.dipole_field_ppm(near_only), brain)
    assert np.linalg.norm(straight - b) / np.linalg.norm(b) > 0.1  # the tilt matters at this size


def test_intracranial_volume_and_head_size_are_adult():
    """Adult intracranial volume is about 1.2–1.7 L; head length about 175–205 mm, breadth 140–165 mm."""
    whole = hp.make_head((160, 120, 54), (1.44, 1.44, 4.0), z_offset_mm=5.0)  # z −101 … +111: the whole cranium
    z = _z(whole)
    voxel_ml = np.prod(whole.voxel_mm) / 1000.0
    icv = np.count_nonzero(whole.brain_mask & (z >= hp.FORAMEN_MAGNUM_Z_MM)) * voxel_ml
    assert 1200 <= icv <= 1700
    in_slab = whole.brain_mask & (z >= hp.FORAMEN_MAGNUM_Z_MM) & (z <= hp.SLAB_CENTRE_Z_MM + 70)
    assert np.count_nonzero(in_slab) * voxel_ml >= 0.85 * icv  # the default slab misses only the vertex
    head = whole.labels > 0
    k = int(np.argmin(np.abs(whole.axes_mm[2] - 10.0)))  # above the nose: glabella to opisthocranion
    length = np.count_nonzero(head[:, :, k].any(axis=1)) * 1.44
    breadth = max(np.count_nonzero(head[:, :, k].any(axis=0)) for k in range(head.shape[2])) * 1.44
    assert 175 <= length <= 205 and 140 <= breadth <= 165


def _runs(labels_along_ray, label):
    """Lengths (in samples) of the contiguous runs of ``label`` along a ray."""
    hits = np.concatenate([[0], (labels_along_ray == label).astype(int), [0]])
    edges = np.flatnonzero(np.diff(hits))
    return edges[1::2] - edges[::2]


def test_calvarium_and_scalp_thickness_along_rays(head):
    """Frontal, parietal and occipital vault 5–9 mm thick, the temporal squama 2.5–5 mm (with the
    temporalis outside it); scalp (skin and subcutaneous fat) 4.5–8 mm, skin 1.5–3 mm."""
    ay, ax, az = head.axes_mm
    i0, j0 = int(np.argmin(np.abs(ay + 16))), int(np.argmin(np.abs(ax)))
    for zmm in (20.0, 40.0):
        k = int(np.argmin(np.abs(az - zmm)))
        plane = head.labels[:, :, k]
        for ray in (plane[i0, j0:], plane[i0, j0::-1], plane[i0:, j0], plane[i0::-1, j0]):  # left, right, back, front
            bone = _runs(ray, hp.BONE)
            assert len(bone) == 1 and 5.0 <= bone[0] * 0.72 <= 9.0
            skin, fat = _runs(ray, hp.SKIN), _runs(ray, hp.FAT)
            assert 1.5 <= skin[-1] * 0.72 <= 3.0 and 4.5 <= (skin[-1] + fat[-1]) * 0.72 <= 8.0
    k, i = int(np.argmin(np.abs(az + 16.0))), int(np.argmin(np.abs(ay + 5.0)))
    for ray in (head.labels[i, j0:, k], head.labels[i, j0::-1, k]):
        bone = _runs(ray, hp.BONE)
        assert len(bone) == 1 and 2.5 <= bone[0] * 0.72 <= 5.0
        assert _runs(ray, hp.MUSCLE)[-1] * 0.72 >= 3.0  # temporalis


def test_vertebral_arteries_calibre_and_junction_height(head):
    """Intracranial vertebral arteries are 2.5–4.5 mm wide and unite 18–27 mm above the foramen magnum."""
    voxel = np.prod(head.voxel_mm)
    for side in ("right", "left"):
        s0, s1 = head.geometry.v4_arc_mm[side]
        lumen_mm3 = np.count_nonzero(head.regions[f"v4_{side}_lumen"]) * voxel
        diameter = 2 * math.sqrt(lumen_mm3 / (s1 - s0) / math.pi)
        assert 2.5 <= diameter <= 4.5
    z = _z(head)
    basilar = head.regions["basilar_lumen"]
    junction_z = z[basilar].min()
    assert 18.0 <= junction_z - hp.FORAMEN_MAGNUM_Z_MM <= 27.0
    for side in ("right", "left"):
        assert z[head.regions[f"v4_{side}"]].max() <= junction_z + 4.0


def _walk(labels, start, step, skip, limit=60):
    """Labels met walking from ``start`` (voxel, float) along ``step`` (voxels), past the ``skip`` labels:
    the first label not in ``skip`` after at least one CSF sample, or None."""
    seen_csf = False
    for t in range(1, limit):
        i, j = (int(round(start[0] + t * step[0])), int(round(start[1] + t * step[1])))
        lab = labels[i, j]
        if lab == hp.CSF:
            seen_csf = True
        elif lab not in skip:
            return lab if seen_csf else None
    return None


def test_v4_runs_in_the_premedullary_cistern_between_medulla_and_clivus(head):
    z = head.axes_mm[2]
    vessel = (hp.ARTERY_LUMEN, hp.ARTERY_WALL) + tuple(t.label for t in head.lesions)
    for side in ("right", "left"):
        v4 = head.regions[f"v4_{side}"]
        assert head.brain_mask[v4].all()
        ring = ndimage.binary_dilation(v4, np.ones((5, 5, 1), bool)) & ~v4
        around = head.labels[ring]
        assert np.isin(around, (hp.CSF,) + vessel).mean() > 0.8  # bathed in CSF, not against bone or brain
        for k in np.flatnonzero((z >= hp.FORAMEN_MAGNUM_Z_MM + 8) & (z <= hp.VERTEBROBASILAR_JUNCTION[2] - 4)):
            lumen = head.regions[f"v4_{side}_lumen"][:, :, k]
            if not lumen.any():
                continue
            centre = np.array(ndimage.center_of_mass(lumen))
            # Anterior (decreasing voxel index i is +y): CSF, then the clivus.
            assert _walk(head.labels[:, :, k], centre, (-1.0, 0.0), vessel) == hp.BONE
            # Towards the medulla's axis (x = 0, behind the artery): CSF, then the brainstem.
            axis = np.array([np.argmin(np.abs(head.axes_mm[0] - hp.brainstem_axis_y(z[k]))),
                             np.argmin(np.abs(head.axes_mm[1]))], float)
            direction = (axis - centre) / np.linalg.norm(axis - centre)
            assert _walk(head.labels[:, :, k], centre, direction, vessel) == hp.BRAINSTEM
    cistern = head.regions["premedullary_cistern"]
    upto_junction = _z(head) <= hp.VERTEBROBASILAR_JUNCTION[2]
    for side in ("right", "left"):
        v4 = head.regions[f"v4_{side}"] & upto_junction
        assert np.count_nonzero(v4 & cistern) >= 0.9 * np.count_nonzero(v4)


def test_lesion_occupancy_sums_to_its_analytic_volume(head):
    """Each lesion is an annular sector of the wall: volume = span/2·((r + t)² − r²)·length."""
    voxel = np.prod(head.voxel_mm)
    assert len(head.lesions) == 3
    for truth in head.lesions:
        les = truth.lesion
        r, t = 1.75, les.thickness_mm  # the V4 lumen radius of the geometry
        expected = math.radians(les.span_deg) / 2 * ((r + t) ** 2 - r**2) * les.length_mm
        assert truth.occupancy.sum() * voxel == pytest.approx(expected, rel=0.03)
        full = truth.occupancy >= 0.999
        assert full.any() and np.allclose(head.chi_ppm[full], les.chi_ppm, atol=0.015)
        assert np.array_equal(head.labels == truth.label, truth.occupancy >= 0.5)
        # The partial-volume truth lies between the lesion's χ and that of its surroundings (CSF, wall).
        lo, hi = sorted((les.chi_ppm, 0.0))
        assert lo < truth.pv_chi_ppm < hi
        assert abs(truth.pv_chi_ppm) < abs(les.chi_ppm)


def test_scalp_fat_outshines_central_white_matter(head, signal):
    """The property that breaks magnitude-threshold masks on real heads."""
    first = signal[0][..., 0]
    z = _z(head)
    x, y, zz = head.coordinates_mm()
    cx, cy, cz = hp.HEAD_CENTRE_MM
    central = ((x - cx) ** 2 + (y - cy) ** 2 + (zz - cz) ** 2 <= 25.0**2) & (head.labels == hp.WM)
    fat = head.regions["scalp_fat"] & (z > -20)
    assert np.median(first[fat]) > 2.0 * np.median(first[central])
    # Any threshold that keeps 95 % of the central white matter keeps all the scalp fat.
    assert (first[fat] > np.percentile(first[central], 5)).mean() > 0.99


def test_fat_phase_evolves_at_minus_3_4_ppm(head, signal):
    """Fat's phase advances at −3.4 ppm·γ̄B0 (−434 Hz at 3 T) on top of the field."""
    magnitude, phase, field_ppm = signal
    te = np.asarray(hp.STUDY_TE_S)
    z = _z(head)
    fat = np.flatnonzero((head.regions["scalp_fat"] & (z > -20)).ravel())[::50]
    wm = np.flatnonzero(((head.labels == hp.WM) & head.brain_mask).ravel())[::500]
    hz_per_ppm = GAMMA_BAR_HZ_PER_T * 3.0 * 1e-6
    shift_hz = FAT_SHIFT_PPM * hz_per_ppm
    assert shift_hz == pytest.approx(-434.3, abs=0.1)

    def residual(idx, shift):
        s = magnitude.reshape(-1, len(te))[idx] * np.exp(1j * phase.reshape(-1, len(te))[idx])
        f = field_ppm.ravel()[idx, None] * hz_per_ppm + shift
        s = s * np.exp(-2j * np.pi * f * te)
        return np.abs(np.angle(s * np.conj(s[:, :1])))[:, -1]

    assert np.median(residual(fat, shift_hz)) < 0.05
    assert np.median(residual(fat, 0.0)) > 1.0  # without the shift the phase does not fit
    assert np.median(residual(wm, 0.0)) < 0.1


def test_receive_sensitivity_rises_towards_the_scalp(head):
    """About 2–2.5× brighter at the scalp than at the centre, as with a 32-channel head array."""
    b1 = hp.receive_sensitivity(head.axes_mm)
    x, y, z = head.coordinates_mm()
    cx, cy, cz = hp.HEAD_CENTRE_MM
    centre = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 5.0**2
    at_centre = np.broadcast_to(centre, head.shape)
    assert np.median(b1[at_centre]) == pytest.approx(1.0, abs=0.03)
    scalp = np.isin(head.labels, (hp.SKIN, hp.FAT)) & (_z(head) > -20)
    assert 2.0 <= np.median(b1[scalp]) <= 2.5


def test_first_echo_snr_is_40_in_central_white_matter(head, signal):
    first = signal[0][..., 0]
    air = np.zeros(head.shape, bool)
    air[:12, :12] = air[:12, -12:] = air[-12:, :12] = air[-12:, -12:] = True
    assert (head.labels[air] == hp.OUTSIDE_AIR).all()
    sigma = first[air].mean() / math.sqrt(math.pi / 2)  # Rayleigh mean of pure noise
    x, y, z = head.coordinates_mm()
    cx, cy, cz = hp.HEAD_CENTRE_MM
    central = ((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 15.0**2) & (head.labels == hp.WM)
    assert first[central].mean() / sigma == pytest.approx(40.0, rel=0.1)


def test_brain_mask_holds_the_intracranial_space_only(head):
    mask = head.brain_mask
    outside = (hp.BONE, hp.FAT, hp.SKIN, hp.MUSCLE, hp.EYE) + hp.AIR_LABELS
    assert not np.isin(head.labels[mask], outside).any()
    for name in ("v4_right", "v4_left", "basilar", "posterior_horns", "dentate", "lesions", "choroid_calcification",
                 "thalamus", "venous_sinuses"):
        assert mask[head.regions[name]].all(), name
    z = _z(head)
    assert not (mask & (z < hp.FORAMEN_MAGNUM_Z_MM - hp.BRAIN_MASK_BELOW_FM_MM)).any()
    assert not mask[head.regions["clivus"] | head.regions["sphenoid_sinus"]].any()
    parenchyma = np.isin(head.labels, (hp.GM, hp.WM, hp.BRAINSTEM) + hp.DEEP_GREY_LABELS)
    assert mask[parenchyma].all()


def test_deep_grey_nuclei_have_adult_sizes_and_places(head):
    """Per side (mL): caudate 2.5–5, putamen 3.5–7, pallidum 0.8–2.5, thalamus 5–9, red nucleus 0.1–0.4,
    substantia nigra 0.2–0.8, dentate 0.5–1.5; putamen lateral to pallidum lateral to thalamus' centre;
    caudate head in front of the thalamus; red nucleus medial to the substantia nigra."""
    ranges = {"caudate": (2.5, 5), "putamen": (3.5, 7), "globus_pallidus": (0.8, 2.5), "thalamus": (5, 9),
              "red_nucleus": (0.1, 0.4), "substantia_nigra": (0.2, 0.8), "dentate": (0.5, 1.5)}
    voxel_ml = np.prod(head.voxel_mm) / 1000
    x, y, z = (np.broadcast_to(c, head.shape) for c in head.coordinates_mm())
    centroid = {}
    for name, (lo, hi) in ranges.items():
        for side, mask in zip(("right", "left"), _per_side(head, head.regions[name])):
            assert lo <= np.count_nonzero(mask) * voxel_ml <= hi, (name, side)
            centroid[name, side] = (x[mask].mean(), y[mask].mean(), z[mask].mean())
    for side, sign in (("right", 1), ("left", -1)):
        c = {name: centroid[name, side] for name in ranges}
        assert sign * c["putamen"][0] > sign * c["globus_pallidus"][0] > sign * c["thalamus"][0] > 0
        assert c["caudate"][1] > c["thalamus"][1]
        assert abs(c["red_nucleus"][0]) < abs(c["substantia_nigra"][0])
        assert c["dentate"][2] < hp.VERTEBROBASILAR_JUNCTION[2] + 15 < c["thalamus"][2]
    dentate_rim = ndimage.binary_dilation(head.regions["dentate"]) & ~head.regions["dentate"]
    assert np.isin(head.labels[dentate_rim], (hp.WM, hp.GM)).mean() > 0.95


def test_air_spaces_are_labelled_apart_from_outside_air(head):
    near_outside = ndimage.binary_dilation(head.labels == hp.OUTSIDE_AIR, iterations=2)
    for label in (hp.SINUS_AIR, hp.MASTOID_AIR, hp.AIRWAY):
        inside = head.labels == label
        assert inside.any() and not (inside & near_outside).any()
    x, y, z = (np.broadcast_to(c, head.shape) for c in head.coordinates_mm())
    sphenoid = head.regions["sphenoid_sinus"] & (head.labels == hp.SINUS_AIR)
    basilar = head.regions["basilar"]
    assert y[sphenoid].mean() > y[basilar].max() and z[sphenoid].max() < hp.DORSUM_SELLAE[2]
    mastoid = head.labels == hp.MASTOID_AIR
    sigmoid = head.regions["sigmoid_sinus"]
    for side_mastoid, side_sigmoid in zip(_per_side(head, mastoid), _per_side(head, sigmoid)):
        assert np.abs(x[side_mastoid]).mean() > np.abs(x[side_sigmoid]).mean()


def test_write_head_case_is_bids_megre_with_truth(tmp_path):
    tilt = np.array([0.0, 0.2, 1.0]) / math.hypot(0.2, 1.0)
    case = write_head_case(tmp_path, "H-01", shape=COARSE_SHAPE, voxel_mm=COARSE_VOXEL_MM, b0_dir=tilt,
                              te_s=(0.005, 0.010), compress=True)
    gre = load_gre(case.anat_dir)
    assert gre.shape == COARSE_SHAPE and gre.n_echoes == 2
    np.testing.assert_allclose(gre.te_s, (0.005, 0.010))
    np.testing.assert_allclose(gre.b0_dir, tilt, atol=1e-9)
    np.testing.assert_allclose(gre.affine, case.affine, atol=1e-6)
    names = sorted(p.name for p in case.anat_dir.iterdir())
    assert "sub-H01_echo-1_part-mag_MEGRE.nii.gz" in names and "sub-H01_echo-2_part-phase_MEGRE.json" in names
    sidecar = json.loads((case.anat_dir / "sub-H01_echo-2_part-phase_MEGRE.json").read_text())
    assert sidecar["EchoTime"] == 0.010 and sidecar["MagneticFieldStrength"] == 3.0
    info = json.loads((case.truth_dir / "phantom.json").read_text())
    assert info["labels"]["cortical_bone"] == hp.BONE and info["labels"]["sinus_air"] == hp.SINUS_AIR
    assert [les["label"] for les in info["lesions"]] == [40, 41, 42]
    labels = np.asarray(nib.load(str(case.labels_path)).dataobj)
    mask = np.asarray(nib.load(str(case.brain_mask_path)).dataobj)
    assert labels.shape == COARSE_SHAPE and mask.any() and not np.isin(labels[mask > 0], hp.AIR_LABELS).any()
    for les in info["lesions"]:
        occupancy = np.asarray(nib.load(str(case.truth_dir / f"lesion-{les['label']}_occupancy.nii.gz")).dataobj)
        assert occupancy.sum() * np.prod(COARSE_VOXEL_MM) == pytest.approx(les["volume_mm3"], rel=0.05)


def test_lesions_are_validated():
    with pytest.raises(ValueError, match="side"):
        hp.head_geometry(lesions=[hp.Lesion("middle", 0.5, "hematoma", 0.3)])
    with pytest.raises(ValueError, match="kind"):
        hp.head_geometry(lesions=[hp.Lesion("left", 0.5, "plaque", 0.3)])
    with pytest.raises(ValueError, match="fraction"):
        hp.head_geometry(lesions=[hp.Lesion("left", 1.5, "hematoma", 0.3)])


def test_right_means_the_patients_right_in_ras_world_coordinates(tmp_path):
    """NIfTI world coordinates are RAS+: +x is the patient's right. Structures named right must lie there,
    in the head and in the slab phantom, as a reader will see them in Slicer."""
    from QSMReproducibilityLib import phantom as slab

    head = hp.make_head(shape=(160, 120, 70), voxel_mm=(1.44, 1.44, 2.0))
    for name in ("v4", "posterior_horn"):
        for side, sign in (("right", 1), ("left", -1)):
            ijk = np.argwhere(head.regions[f"{name}_{side}"])
            world_x = (head.affine[:3, :3] @ ijk.T + head.affine[:3, 3:4])[0]
            assert sign * world_x.mean() > 5.0, (name, side)
    case = slab.simulate_case("S1", "hematoma", seed=3, out_dir=tmp_path, shape=(64, 64, 16))
    from QSMReproducibilityLib.io import load_volume

    labels, affine = load_volume(case.labels_path)
    for label, sign in ((slab.LESION_RIGHT, 1), (slab.LESION_LEFT, -1)):
        artery = np.argwhere(labels == label)
        if len(artery):
            assert sign * (affine[:3, :3] @ artery.T + affine[:3, 3:4])[0].mean() > 0
