"""``spleen-course``: the command-line face of the course (the notebooks are the other).

Every subcommand is a thin wrapper over a public function of the package; each has
``--help``. Errors a user can cause print one line (``error: <file>: <what is wrong>``) and
exit with status 2, never a traceback.

Example:
    $ spleen-course synth --out data/synthetic --cases 12 --seed 0
    $ spleen-course train --data-dir data/synthetic --out runs/demo --max-epochs 20
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..ground.errors import ConfigError, CourseError
from .options import positive_int

__all__ = ["build_parser", "main"]


Handler = Callable[[argparse.Namespace], int]


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# ---------------------------------------------------------------------------------- synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic spleen CT data set (Task09 layout)",
                       description="Write a synthetic abdominal CT phantom with spleen labels in the "
                                   "Medical Segmentation Decathlon Task09 layout.")
    p.add_argument("--out", type=Path, required=True, help="output data directory")
    p.add_argument("--cases", type=positive_int, default=12, help="number of training cases (default 12)")
    p.add_argument("--shape", type=positive_int, nargs=3, metavar=("Z", "Y", "X"),
                   default=None, help="voxels per volume: slices, rows, columns")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"), default=None,
                   help="voxel spacing in mm (x, y, z)")
    p.add_argument("--test-cases", type=_non_negative_int, default=4,
                   help="held-out test cases, with labels (imagesTs/, labelsTs/; default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dicom", action="store_true", help="also write each case as a DICOM CT series")
    p.add_argument("--lps-as-ras", action="store_true",
                   help="write every NIfTI with a lying header: DICOM's LPS numbers as if they were RAS "
                        "(the body turned 180 degrees; DICOM series keep the true geometry)")
    p.add_argument("--force", action="store_true", help="overwrite an existing data set")
    p.set_defaults(handler=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from ..data.phantom import PhantomSpec, write_synthetic_dataset

    spec = PhantomSpec()
    if args.shape is not None:
        z, y, x = args.shape
        spec = spec.replace(shape=(x, y, z))
    if args.spacing is not None:
        spec = spec.replace(spacing=tuple(args.spacing))
    out = write_synthetic_dataset(args.out, num_cases=args.cases, spec=spec, seed=args.seed,
                                  dicom=args.dicom, overwrite=args.force, num_test=args.test_cases,
                                  lps_as_ras=args.lps_as_ras)
    print(f"synthetic data set{' (LPS-as-RAS headers)' if args.lps_as_ras else ''}: {out}")
    return 0


# ------------------------------------------------------------------------------ dicom2nifti
def _warn(line: str) -> None:
    """Print one ``warning:`` line on stderr (the DICOM functions' ``notify``)."""
    print(f"warning: {line}", file=sys.stderr)


def _add_dicom2nifti(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dicom2nifti", help="convert every DICOM series of a folder (a whole study) to NIfTI",
        description="Scan IN_DIR recursively (a series folder, or a whole study as a PACS exports "
                    "it), group the DICOM files by series, order the slices by position and write "
                    "one NIfTI per series that forms a volume (or per chunk) to OUT_DIR, named from "
                    "series number and description. Each series that is not a volume -- a "
                    "localizer, slices at one position, no image geometry (a secondary capture "
                    "such as a dose report), not an image (a structured report), a missing or "
                    "duplicate slice -- is skipped with one warning line; a series that fails leaves "
                    "no file behind. Enhanced (multi-frame) CT converts like a single-frame series; "
                    "a gantry-tilted series is resampled onto a regular grid (with a warning "
                    "stating the angle) unless --no-tilt-correction.",
        epilog="Output: the written files on stdout, one per line; warnings and a summary table "
               "of every series (written, skipped or failed, and why) on stderr. Exit status 0 "
               "when at least one series was written, 2 with one error line when none was.")
    p.add_argument("in_dir", type=Path, metavar="IN_DIR", help="folder with DICOM files (searched recursively)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for the .nii.gz files")
    p.add_argument("--slices-per-group", type=positive_int, default=None, metavar="N",
                   help="cut each series into chunks of N slices (the short last chunk is kept)")
    p.add_argument("--drop-remainder", action="store_true",
                   help="with --slices-per-group: drop the short last chunk (reported) instead of keeping it")
    p.add_argument("--no-tilt-correction", action="store_true",
                   help="refuse gantry-tilted series instead of resampling them")
    p.set_defaults(handler=_cmd_dicom2nifti)


def _cmd_dicom2nifti(args: argparse.Namespace) -> int:
    import warnings

    from ..data.dicom.convert import convert_study

    if args.drop_remainder and args.slices_per_group is None:
        raise ConfigError(None, "--drop-remainder needs --slices-per-group")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = convert_study(args.in_dir, args.out_dir, args.slices_per_group,
                                   drop_remainder=args.drop_remainder,
                                   tilt_correction=not args.no_tilt_correction, notify=_warn)
        finally:  # anything else a library warned about, even when a later step fails
            for w in caught:
                _warn(str(w.message))
    for path in report.written:
        print(path)
    print(report.table(), file=sys.stderr)
    report.require_written()
    return 0


# ------------------------------------------------------------------------------------ train
def _add_train(sub: argparse._SubParsersAction) -> None:
    from .train import train_arguments

    sub.add_parser("train", help="train the 3D UNet (resumable; --nproc N for several GPUs)",
                   parents=[train_arguments()],
                   description="Train the spleen UNet. Defaults come from the data set: the "
                               "synthetic phantom gets small CPU-friendly settings, the real "
                               "Task09 data MONAI's tutorial settings. Options override them. "
                               "--nproc N trains with N processes (DistributedDataParallel).",
                   ).set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine.history import TrainingHistory
    from ..ground.paths import RunLayout
    from .train import run_training

    run = RunLayout(run_training(args))
    history = TrainingHistory.load(run.root) if run.history_json.is_file() else TrainingHistory()
    best = f"best model: {run.best_model}" if run.best_model.is_file() else "no best model yet"
    print(f"{history.describe_best()}; {best}; checkpoint: {run.checkpoint}")
    return 0


# ------------------------------------------------------------------------------- check-data
def _add_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="check a data set: files, grids, labels, and the spleen's side",
                       description="Read every case of a Task09-layout data set as training does: each "
                                   "image and label must open, share one grid and hold a binary mask. Then "
                                   "say on which side of the body each spleen lies: a case whose spleen "
                                   "lies on the patient's right has a header that is turned or mirrored.")
    p.add_argument("--data-dir", type=Path, required=True, help="data set folder (Task09 layout)")
    p.set_defaults(handler=_cmd_check_data)


def _cmd_check_data(args: argparse.Namespace) -> int:
    from ..data.dataset import side_survey, validate_dataset

    infos = validate_dataset(args.data_dir, check_all=True, log=lambda _line: None)
    for info in infos:
        side = info.side.line() if info.side is not None else "not read"
        print(f"{info.name}: {''.join(info.orientation)}, {info.shape}, {side}")
    print(side_survey(infos).line(corrected=True))
    return 0


# ----------------------------------------------------------------- evaluate and predict
def _inference_options(p: argparse.ArgumentParser) -> None:
    """The options ``evaluate`` and ``predict`` share."""
    p.add_argument("--model", type=Path, required=True,
                   help="best_metric_model.pth (or checkpoint.pt) of a training run, a MONAI bundle "
                        "folder, or 'pretrained' (the bundle `spleen-course pretrained` downloaded)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--keep-largest", action="store_true", default=None,
                   help="keep only the largest connected spleen component")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on the validation cases",
                       description="Segment the validation cases of a data set (the split the model "
                                   "was trained with) and score them against their labels in the "
                                   "original image space: Dice, IoU, HD95 and average surface "
                                   "distance (mm), spleen volumes (mL). Writes the masks, "
                                   "metrics.csv, summary.csv and summary.json to OUT.")
    p.add_argument("--data-dir", type=Path, required=True, help="data set folder (Task09 layout)")
    p.add_argument("--out", type=Path, required=True, help="folder for masks, metrics and summary")
    p.add_argument("--cases", choices=("val", "test", "all"), default="val",
                   help="validation split (default), the held-out test cases, or every training case")
    p.add_argument("--keep-headers", action="store_true",
                   help="read every case with its header as it is (default: a case whose spleen lies where "
                        "a header turned 180 degrees puts it is read turned back, as training reads it)")
    _inference_options(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..engine.evaluate import evaluate_cases

    report = evaluate_cases(args.model, args.data_dir, args.out, cases=args.cases,
                            device=args.device, keep_largest=args.keep_largest,
                            keep_headers=args.keep_headers)
    print()
    print(report.table())
    print()
    print(f"per-case metrics: {report.csv_path}")
    print(f"summary:          {report.summary_csv} and {report.summary_json.name}")
    if report.masks_dir is not None:
        print(f"masks:            {report.masks_dir}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="segment the spleen in one CT (NIfTI file, DICOM series or study folder)",
        description="Segment the spleen in a CT volume (.nii/.nii.gz) or a DICOM folder, write the "
                    "mask (uint8, 1 = spleen) with the input's shape and affine, and print the spleen "
                    "volume in mL. In a DICOM folder holding several series (a study as a PACS "
                    "exports it) the series to segment is chosen by a documented rule -- axial CT "
                    "volumes only; the one with the most slices; ties broken by the thinnest slice "
                    "step -- or by --series; the command prints which series it chose and which "
                    "others were there. The converted CT is saved beside the mask as "
                    "<output>_image.nii.gz.")
    p.add_argument("--input", type=Path, required=True,
                   help="CT .nii/.nii.gz file, or a DICOM folder (one series or a whole study)")
    p.add_argument("--output", type=Path, required=True, help="mask to write (.nii.gz)")
    p.add_argument("--series", default=None, metavar="UID|NUMBER",
                   help="in a DICOM folder: segment this series (SeriesInstanceUID or series number)")
    p.add_argument("--no-tilt-correction", action="store_true",
                   help="refuse a gantry-tilted series instead of resampling it")
    p.add_argument("--dicom-seg", type=Path, default=None, metavar="OUT.dcm",
                   help="also write the mask as a DICOM Segmentation of the input series (DICOM input only)")
    p.add_argument("--fill-missing-uids", action="store_true",
                   help="with --dicom-seg: when anonymisation removed the series' Study/Series Instance "
                        "UIDs, reference UIDs derived from the series instead of refusing")
    p.add_argument("--lps-as-ras", action="store_true",
                   help="NIfTI input whose header holds DICOM's LPS numbers as if they were RAS (the body "
                        "turned 180 degrees): read it with x and y of its header negated")
    _inference_options(p)
    p.set_defaults(handler=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    import warnings

    from ..data.dicom.series import DicomWarning
    from ..engine.predict import AnatomyWarning, predict_file

    if args.fill_missing_uids and args.dicom_seg is None:
        raise ConfigError(None, "--fill-missing-uids needs --dicom-seg")
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DicomWarning)
            warnings.simplefilter("always", AnatomyWarning)
            result = predict_file(args.model, args.input, args.output, device=args.device,
                                  keep_largest=args.keep_largest, series=args.series,
                                  tilt_correction=not args.no_tilt_correction, notify=_warn,
                                  dicom_seg=args.dicom_seg, fill_missing_uids=args.fill_missing_uids,
                                  lps_as_ras=args.lps_as_ras)
    finally:  # the course's own warnings in one line each, the libraries' as usual
        for w in caught:
            if issubclass(w.category, (DicomWarning, AnatomyWarning)):
                _warn(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if result.series:
        rule = "as asked" if args.series is not None else "rule: axial CT, most slices, then thinnest"
        print(f"DICOM series segmented ({rule}): {result.series}")
        for other in result.other_series:
            print(f"  also in the folder: {other}")
    if result.image != result.input:
        print(f"converted CT: {result.image}")
    print(f"mask: {result.output} (shape {result.shape}, {result.seconds:.1f} s on {result.device})")
    if result.dicom_seg is not None:
        print(f"DICOM SEG: {result.dicom_seg}")
    print(f"spleen volume: {result.spleen_ml:.1f} mL ({result.spleen_voxels} voxels)")
    print(f"anatomy: {result.side} (CT fed {result.layout})")
    return 0


# ------------------------------------------------------------------ download and pretrained
def _add_download_command(sub: argparse._SubParsersAction, name: str, handler: Handler, *, summary: str,
                          description: str, folder: str, folder_help: str, url_help: str,
                          option: tuple[str, str], required: bool = False) -> None:
    """A command that downloads into a folder (``download``, ``pretrained``): the ``folder``
    option, ``--url``, one ``option`` of its own (flag, help) and ``--no-progress``."""
    p = sub.add_parser(name, help=summary, description=description)
    p.add_argument(folder, type=Path, required=required, default=None, help=folder_help)
    p.add_argument("--url", default=None, help=url_help)
    p.add_argument(option[0], default=None, help=option[1])
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(handler=handler)


def _add_download(sub: argparse._SubParsersAction) -> None:
    _add_download_command(
        sub, "download", _cmd_download, summary="download the real MSD Task09 Spleen data set",
        description="Download and extract the Medical Segmentation Decathlon Task09 Spleen data set "
                    "(about 1.5 GB) into ROOT/Task09_Spleen. Does nothing if it is already there; a "
                    "failed or corrupt download leaves no data set behind.",
        folder="--root", required=True, folder_help="folder to hold Task09_Spleen/ (created if needed)",
        url_help="archive URL (default: the Task09_Spleen.tar that MONAI's DecathlonDataset uses)",
        option=("--md5", ("expected md5 of the archive (default: MONAI's md5 of the official archive, "
                          "right for a mirror of it too)")))


def _cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import MSD_SPLEEN_MD5, MSD_SPLEEN_URL, download_msd_spleen

    path = download_msd_spleen(args.root, url=args.url or MSD_SPLEEN_URL,
                               md5=args.md5 or MSD_SPLEEN_MD5, progress=not args.no_progress)
    print(f"data set: {path}")
    return 0


def _add_pretrained(sub: argparse._SubParsersAction) -> None:
    _add_download_command(
        sub, "pretrained", _cmd_pretrained,
        summary="download MONAI's pretrained spleen bundle (no GPU needed)",
        description="Download MONAI's model-zoo bundle spleen_ct_segmentation (a UNet trained on the "
                    "real Task09 data), check the weights' md5 against the bundle's large_files.yml "
                    "and its network against the course's UNet, into DIR/spleen_ct_segmentation. "
                    "Does nothing if it is already there; a failed or corrupt download leaves nothing "
                    "behind. Then: spleen-course predict --model pretrained ...",
        folder="--dir", folder_help="folder to hold spleen_ct_segmentation/ (default: <course home>/pretrained)",
        url_help="a zip archive of the bundle (a mirror); default: MONAI's model-zoo hosting",
        option=("--version", "bundle version (default: the latest)"))


def _cmd_pretrained(args: argparse.Namespace) -> int:
    from ..engine.bundle import download_pretrained

    bundle = download_pretrained(args.dir, url=args.url, version=args.version,
                                 progress=not args.no_progress)
    print(f"bundle: {bundle.path}")
    return 0


# ------------------------------------------------------------------------------- run-course
def _add_run_course(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run-course", help="execute every notebook in order with papermill",
                       description="Execute the course notebooks in order, headless, each in a fresh "
                                   "kernel; write the executed notebooks, their HTML and a summary "
                                   "(time per notebook, validation Dice) to OUTPUT_DIR. All notebooks "
                                   "share one run directory (OUTPUT_DIR/run), so evaluation uses the "
                                   "model that training wrote.")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="where executed notebooks, HTML and summary go (default: runs/course)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data set for every notebook (default: the synthetic phantom)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a notebook parameter (repeatable); VALUE is read as a Python literal "
                        "when it is one (3, 0.5, True, [96, 96, 96]), else as text")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="limit per notebook cell (default 3600)")
    p.add_argument("--only", nargs="+", default=None, metavar="NN",
                   help="run only these notebooks (numbers like 03, or names)")
    p.add_argument("--fresh", action="store_true",
                   help="empty the shared run directory first (only one that run-course created; "
                        "a folder of yours that holds files is refused, never emptied)")
    p.set_defaults(handler=_cmd_run_course)


def _cmd_run_course(args: argparse.Namespace) -> int:
    from .course import DEFAULT_CELL_TIMEOUT_S, parse_parameter_value, run_course

    params = {name: parse_parameter_value(value) for name, value in args.parameter}
    summary = run_course(args.output_dir, data_dir=args.data_dir, parameters=params,
                         notebooks=args.only, fresh=args.fresh,
                         cell_timeout=DEFAULT_CELL_TIMEOUT_S if args.timeout is None else args.timeout,
                         progress=lambda line: print(line, flush=True))
    print(f"outputs: {summary.output_dir} (executed notebooks, HTML, summary.md)")
    if summary.final_val_dice is not None:
        print(f"final validation Dice: {summary.final_val_dice:.4f} (best {summary.best_val_dice:.4f} "
              f"at epoch {summary.best_epoch})")
    else:
        print("final validation Dice: none (no training history in the run directory)")
    return 0


# ------------------------------------------------------------------------------------- site
def _add_site(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("site", help="build a static web site of a course run (make site)",
                       description="Build a static HTML site (Sphinx with MyST-NB) from the executed "
                                   "notebooks of a course run, without running them again: the course "
                                   "map and the run it shows (date, versions, data, final Dice), every "
                                   "notebook with its outputs and figures (solutions collapsed), the "
                                   "glossary, the README's set-up, command-line and troubleshooting "
                                   "sections, and search. Publish OUT as it is (e.g. GitHub Pages).")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="the course run to show: run-course's --output-dir (default: runs/course)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the site (default: runs/site); an earlier site there is replaced")
    p.add_argument("--glossary", type=Path, default=None,
                   help="the glossary page's Markdown (default: docs/glossary.md of the checkout)")
    p.set_defaults(handler=_cmd_site)


def _cmd_site(args: argparse.Namespace) -> int:
    from ..ground.paths import default_runs_dir
    from .site import build_site

    report = build_site(args.output_dir or default_runs_dir() / "course", args.out or default_runs_dir() / "site",
                        glossary=args.glossary, progress=lambda line: print(line, flush=True))
    for line in report.warnings:
        _warn(line)
    print(f"site: {report.index} ({len(report.pages)} pages, {len(report.warnings)} Sphinx warnings)")
    return 0


# ----------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``spleen-course`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="spleen-course",
                                     description="3D spleen segmentation course: data, training, evaluation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_dicom2nifti, _add_check_data, _add_train, _add_evaluate, _add_predict,
                _add_download, _add_pretrained, _add_run_course, _add_site):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spleen-course`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
