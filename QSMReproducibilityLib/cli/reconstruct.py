"""``qsmrepro reconstruct``: multi-echo GRE to a χ map in ppm."""

from __future__ import annotations

from pathlib import Path

from ..progress import ConsoleProgress
from ..recon import mask as masks, pipeline
from .arguments import add_phase_units_argument


def add_command(subparsers) -> None:
    rec = subparsers.add_parser("reconstruct", help="multi-echo GRE -> QSM (ppm)")
    rec.add_argument("input", nargs="?", help="BIDS anat folder or DICOM folder")
    rec.add_argument("--magnitude", nargs="+", help="magnitude NIfTI: one 4-D file or one 3-D file per echo")
    rec.add_argument("--phase", nargs="+", help="phase NIfTI: one 4-D file or one 3-D file per echo")
    rec.add_argument("--te", type=float, nargs="+", help="echo times in seconds (override or supply)")
    rec.add_argument("--b0", type=float, default=None, metavar="TESLA",
                     help="field strength in tesla, 0.1-21 (default: sidecar or DICOM, else 3 with a warning)")
    rec.add_argument("--b0-dir", type=float, nargs=3, metavar=("X", "Y", "Z"),
                     help="B0 direction in the voxel frame (default: from the sidecar's B0_dir, else the affine)")
    add_phase_units_argument(rec)
    rec.add_argument("-o", "--output", required=True, help="QSM NIfTI to write (chi in ppm)")
    rec.add_argument("--method", default=pipeline.ReconParams.method, choices=pipeline.METHODS)
    rec.add_argument("--unwrap", default=pipeline.ReconParams.unwrap, choices=pipeline.UNWRAP_METHODS)
    rec.add_argument("--background", default=pipeline.ReconParams.background, choices=pipeline.BACKGROUND_METHODS,
                     help="background field removal: the background part of a preconditioned total-field fit "
                          "(default; keeps lesions at the mask's edge), V-SHARP (the study's), projection onto "
                          "dipole fields, or Laplacian boundary value (loses one voxel at the mask's edge)")
    bet_fractions = masks.candidate_fractions("bet")
    rec.add_argument("--mask-method", default=pipeline.ReconParams.mask_method, choices=masks.MASK_METHODS,
                     help=f"how the nine candidate brain masks are made: BET at fractional thresholds "
                          f"{bet_fractions[0]:g}-{bet_fractions[-1]:g} (default, as the study did), or magnitude "
                          "thresholds (phantoms without scalp only)")
    rec.add_argument("--mask-index", type=int, default=None,
                     help=f"candidate mask 0-{len(bet_fractions) - 1} (default: BET "
                          f"f = {masks.BET_DEFAULT_FRACTION:g}, candidate {masks.default_index('bet')})")
    rec.add_argument("--mask", help="use this mask NIfTI instead of the candidates")
    rec.add_argument("--mask-preview", metavar="PNG",
                     help="also write all nine candidate masks over the magnitude as a PNG, to pick one by eye")
    rec.add_argument("--save-field", help="also write the local field (ppm)")
    rec.add_argument("--save-mask", help="also write the mask used")
    rec.set_defaults(handler=_run)


def _run(args) -> int:
    params = pipeline.ReconParams(method=args.method, unwrap=args.unwrap, background=args.background,
                                  mask_method=args.mask_method, mask_index=args.mask_index)
    with ConsoleProgress("reconstruct") as bar:
        result = pipeline.reconstruct_path(
            args.input, args.output, mask_out=args.save_mask, field_out=args.save_field,
            magnitude=args.magnitude, phase=args.phase, te_s=args.te, b0_tesla=args.b0, b0_dir=args.b0_dir,
            params=params, user_mask_path=args.mask, mask_preview_out=args.mask_preview,
            phase_units=args.phase_units, progress=bar,
        )
    for note in result.notes:
        print(note)
    print(f"QSM (ppm): {Path(args.output).resolve()}  [{result.seconds['total']:.1f} s]")
    return 0
