"""A digital head phantom for multi-echo GRE at 3 T: scalp, skull, sinuses, brain and the V4 segments.

The elliptic slab of :mod:`QSMReproducibilityLib.phantom` has no scalp, so brain masks by magnitude threshold work on it but
fail on real heads. This phantom has what real heads have around the brain: skin and bright subcutaneous
fat (brighter still under the receive coil's surface sensitivity), a dark skull with a skull base (clivus,
petrous bones, occipital bone around the foramen magnum), air in the paranasal sinuses, mastoid cells
and pharynx, neck muscles and a face. Inside: a CSF layer under the skull, cerebrum (cortical ribbon over
white matter), cerebellum with dentate nuclei, a tilted brainstem continuing as the spinal cord, the
ventricles (the posterior horns are the study's CSF reference), deep grey nuclei, the dural venous
sinuses, a choroid-plexus calcification, and the arteries of the study: both intracranial vertebral
arteries (V4) in the premedullary cistern joining into the basilar artery, with wall lesions
(intramural haematomas, calcifications) whose partial-volume truth is recorded.

Coordinates are millimetres in RAS (+x patient right, +y anterior, +z superior), origin near the
anterior commissure. The geometry is analytic (ellipsoids, super-ellipsoids, tubes along splines,
half-spaces), evaluated at voxel centres, so any grid can be used. The study grid is 320×240×70 voxels of
0.72×0.72×2 mm with the 230 mm axis along anterior–posterior: voxel axis 0 runs posterior (RAS −y),
axis 1 runs towards the patient's right (RAS +x), axis 2 runs superior (RAS +z), so B0 lies along voxel axis 2.

Susceptibilities are relative to CSF (ppm). The signal is
S_e = M0·B1(r)·exp(−TE_e/T2*)·exp(i(φ0(r) + 2π(γ̄B0·Δb(r) + f_cs)·TE_e)) + complex Gaussian noise, with
Δb the dipole field of χ and f_cs the chemical shift of fat. The head reaches beyond the slab (vertex
above, neck and shoulders below); the field of those parts is computed on a coarser grid and added
(see :func:`dipole_field_ppm`).

One module per job, each importing only those before it: ``tissues`` (labels and their χ, M0, T2*,
chemical shift) -> ``shapes`` (signed-distance primitives, splines) -> ``geometry`` (landmarks, lesions,
skull base, vessels) -> ``painting`` (labels and structures on a grid) -> ``assembly`` (:func:`make_head`,
:class:`HeadPhantom`) -> ``gre_signal`` (field, shim, coil sensitivity, :func:`simulate_head`).
"""

from .assembly import (
    BODY_BOUNDS_MM, FAR_VOXEL_MM, FOV_CENTRE_MM, HEAD_BOUNDS_MM, SLAB_CENTRE_Z_MM, STUDY_SHAPE, STUDY_TE_S,
    STUDY_VOXEL_MM, TAPER_MM, FieldSources, HeadPhantom, LesionTruth, head_affine, make_head, region_names,
)
from .geometry import (
    ARTERY_WALL_MM, BASE_PLATE_MM, BASILAR_LUMEN_RADIUS_MM, BASION, BRAIN_MASK_BELOW_FM_MM, CLIVUS_THICKNESS_MM,
    CSF_LAYER_MM, DEFAULT_LESIONS, DORSUM_SELLAE, FORAMEN_MAGNUM_CENTRE, FORAMEN_MAGNUM_SEMI_MM, FORAMEN_MAGNUM_Z_MM,
    OPISTHION, SCALP_MM, SKIN_MM, SKULL_MM, V4_LUMEN_RADIUS_MM, VERTEBROBASILAR_JUNCTION, HeadGeometry, Lesion,
    LesionFrame, Tube, brainstem_axis_y, head_geometry,
)
from .gre_signal import (
    COIL_COUNT, COIL_LOOP_RADIUS_MM, HEAD_CENTRE_MM, IMAGE_CORRECTION_MM, dipole_field_ppm, local_field_ppm,
    phase_offset, receive_sensitivity, shim_fit, simulate_head,
)
from .painting import CORTEX_MM
from .tissues import (
    AIRWAY, AIR_LABELS, ARTERY_LUMEN, ARTERY_WALL, BONE, BRAINSTEM, CALCIFICATION, CAUDATE, CSF, DEEP_GREY_LABELS,
    DENTATE, EYE, FAT, GLOBUS_PALLIDUS, GM, LESION_LABEL_BASE, LESION_SIGNAL, MASTOID_AIR, MUSCLE, OUTSIDE_AIR,
    PARENCHYMA_LABELS, PUTAMEN, RED_NUCLEUS, SINUS_AIR, SKIN, SPINAL_CORD, SUBSTANTIA_NIGRA, TEXTURE_PPM, THALAMUS,
    TISSUE, VENOUS_BLOOD, WM, Tissue,
)

__all__ = [
    "BODY_BOUNDS_MM", "FAR_VOXEL_MM", "FOV_CENTRE_MM", "HEAD_BOUNDS_MM", "SLAB_CENTRE_Z_MM", "STUDY_SHAPE",
    "STUDY_TE_S", "STUDY_VOXEL_MM", "TAPER_MM", "FieldSources", "HeadPhantom", "LesionTruth", "head_affine",
    "make_head", "region_names", "ARTERY_WALL_MM", "BASE_PLATE_MM", "BASILAR_LUMEN_RADIUS_MM", "BASION",
    "BRAIN_MASK_BELOW_FM_MM", "CLIVUS_THICKNESS_MM", "CSF_LAYER_MM", "DEFAULT_LESIONS", "DORSUM_SELLAE",
    "FORAMEN_MAGNUM_CENTRE", "FORAMEN_MAGNUM_SEMI_MM", "FORAMEN_MAGNUM_Z_MM", "OPISTHION", "SCALP_MM", "SKIN_MM",
    "SKULL_MM", "V4_LUMEN_RADIUS_MM", "VERTEBROBASILAR_JUNCTION", "HeadGeometry", "Lesion", "LesionFrame", "Tube",
    "brainstem_axis_y", "head_geometry", "COIL_COUNT", "COIL_LOOP_RADIUS_MM", "HEAD_CENTRE_MM",
    "IMAGE_CORRECTION_MM", "dipole_field_ppm", "local_field_ppm", "phase_offset", "receive_sensitivity", "shim_fit",
    "simulate_head", "CORTEX_MM", "AIRWAY", "AIR_LABELS", "ARTERY_LUMEN", "ARTERY_WALL", "BONE", "BRAINSTEM",
    "CALCIFICATION", "CAUDATE", "CSF", "DEEP_GREY_LABELS", "DENTATE", "EYE", "FAT", "GLOBUS_PALLIDUS", "GM",
    "LESION_LABEL_BASE", "LESION_SIGNAL", "MASTOID_AIR", "MUSCLE", "OUTSIDE_AIR", "PARENCHYMA_LABELS", "PUTAMEN",
    "RED_NUCLEUS", "SINUS_AIR", "SKIN", "SPINAL_CORD", "SUBSTANTIA_NIGRA", "TEXTURE_PPM", "THALAMUS", "TISSUE",
    "VENOUS_BLOOD", "WM", "Tissue"
]
