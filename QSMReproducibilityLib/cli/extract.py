"""``qsmrepro extract``: radiomics of segmentations on a χ map, as a long feature table."""

from __future__ import annotations


def add_command(subparsers) -> None:
    ext = subparsers.add_parser("extract", help="radiomics (107 features + CSF-referenced mean/median) for segmentations")
    ext.add_argument("qsm", help="QSM image (NIfTI or NRRD)")
    ext.add_argument("segmentations", nargs="+", help=".seg.nrrd files or label maps (NIfTI/NRRD)")
    ext.add_argument("--params", help="PyRadiomics parameter file (default Resources/QSMRadiomics.yaml)")
    ext.add_argument("--resample", action="store_true", help="resample segmentations on another grid (nearest neighbour)")
    ext.add_argument("-o", "--output", required=True, help="FEATURES.csv or .xlsx")
    ext.set_defaults(handler=_run)


def _run(args) -> int:
    from ..io import check_output_path
    from ..feature_table import write_feature_table
    from ..radiomics import extract_files

    check_output_path(args.output, "feature table (-o)", (".csv", ".xlsx"))
    table = extract_files(args.qsm, args.segmentations, params_path=args.params, resample=args.resample)
    out = write_feature_table(table, args.output)
    print(f"{table['feature'].nunique()} features x {len(table.groupby(['lesion_id', 'observer', 'reading']))} ROIs -> {out.resolve()}")
    return 0
