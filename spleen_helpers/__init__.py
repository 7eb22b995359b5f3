"""spleen_helpers: the tested helper package behind the spleen-course notebooks.

One face for the notebooks: every name a notebook needs is imported from the package itself,
``from spleen_helpers import sample_ct, train, predict_volume``. The names live in four wings
(docs/architecture.md draws them), loaded only when first used (PEP 562), so
``spleen-course --help`` and a notebook's install cell do not pay for MONAI and torch:

* ``ground``: errors, atomic files, paths and run layout, settings, figures;
* ``data``: NIfTI reading and checks, the spleen's side, the data set and its download,
  DICOM (scan, order, choose, convert, read HU), DICOM SEG, the phantom;
* ``engine``: what the command line runs -- transforms, model, checkpoint, history, the
  training loop, process launch, weights (the pretrained bundle, choosing a model), predict,
  evaluate;
* ``teaching``: what only notebooks use -- equality proofs, inspection, viewers, the
  notebooks' opening cells;

and ``tools`` on top: the ``spleen-course`` command, the course runner and the ``torchrun``
entry point. Imports run one way, ground → data → engine → teaching → tools.

Example:
    >>> import spleen_helpers
    >>> spleen_helpers.CourseConfig.synthetic().profile
    'synthetic'
    >>> "predict_volume" in spleen_helpers.__all__
    True
"""

from __future__ import annotations

import importlib
import logging as _logging
import warnings as _warnings
from typing import Any

__version__ = "0.1.0"

# MONAI 1.6 builds a GPU DICOM reader inside every LoadImage and, without nvImageCodec (a
# CUDA-only extra), logs and warns that it falls back to pydicom. The course reads NIfTI with
# nibabel, so this message is noise for every student; silence exactly that message.
_logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin")

#: Where each name of the face lives (module inside the package).
_FACE: dict[str, tuple[str, ...]] = {
    "ground.errors": ("CourseError", "DataError", "DicomError", "CheckpointError", "ConfigError"),
    "ground.figures": ("save_figure",),
    "ground.paths": ("course_home", "default_data_dir", "default_runs_dir", "RunLayout", "env_default"),
    "ground.settings": ("CourseConfig", "config_for", "is_synthetic_dataset"),
    "data.nifti": ("open_nifti", "check_same_grid", "case_name", "volume_ml", "voxel_spacing",
                   "header_disagreement"),
    "data.anatomy": ("LPS_AS_RAS", "SpleenSide", "spleen_side", "survey_sides", "write_lps_as_ras_twin"),
    "data.dataset": ("SampleCT", "sample_ct", "find_dataset", "load_datalist", "load_test_cases",
                     "split_datalist", "CaseInfo", "validate_case", "validate_dataset", "side_survey"),
    "data.download": ("download_msd_spleen",),
    "data.dicom.series": ("DicomSeries", "DicomWarning", "StudyScan"),
    "data.dicom.scan": ("scan_study", "find_series"),
    "data.dicom.choose": ("choose_ct_series", "select_series", "split_series"),
    "data.dicom.convert": ("convert_series", "convert_study", "dicom_dir_to_nifti"),
    "data.dicom.hu": ("load_series_hu",),
    "data.seg": ("mask_to_frames", "series_for_mask", "build_dicom_seg", "write_dicom_seg", "dicom_seg_to_mask"),
    "data.phantom": ("PhantomSpec", "generate_case", "write_phantom_study", "write_synthetic_dataset",
                     "phantom_dir", "ensure_synthetic_dataset"),
    "data.phantom_dicom": ("write_ct_series", "write_enhanced_ct"),
    "engine.transforms": ("TurnHeaderd", "preprocessing_steps", "train_transforms", "val_transforms",
                          "infer_transforms"),
    "engine.model": ("build_unet", "build_loss", "build_optimizer", "build_scheduler", "build_dice_metric",
                     "count_parameters", "resolve_device", "infer_logits"),
    "engine.checkpoint": ("save_checkpoint", "load_checkpoint", "load_model"),
    "engine.history": ("TrainingHistory", "plot_learning_curves"),
    "engine.loop": ("TrainResult", "build_loaders", "validate_dice", "train"),
    "engine.bundle": ("BUNDLE_NAME", "PretrainedBundle", "default_bundle_root", "bundle_config", "open_bundle",
                      "find_pretrained", "download_pretrained"),
    "engine.weights": ("ModelChoice", "choose_model", "find_or_train_model", "load_model_or_bundle"),
    "engine.predict": ("AnatomyWarning", "CheckedPrediction", "PredictionResult", "load_image_for_inference",
                       "invertd_mask", "window_for", "predict_volume", "segment_checked", "save_mask",
                       "predict_file"),
    "engine.evaluate": ("CaseMetrics", "EvaluationReport", "case_metrics", "evaluate_cases"),
    "teaching.proofs": ("assert_same_pipeline", "assert_same_data", "assert_same_weights"),
    "teaching.exercises": ("check_exercise",),
    "teaching.inspect_model": ("block_output_shapes", "format_block_shapes", "plot_unet"),
    "teaching.inspect_transforms": ("select_case", "apply_step_by_step", "summary_table", "plot_steps",
                                    "plot_intensity_scaling", "plot_crop_foreground", "plot_check_transforms",
                                    "sample_patches", "plot_patch_centres", "plot_patches"),
    "teaching.settings_table": ("settings_side_by_side",),
    "teaching.course_map": ("plot_data_path",),
    "teaching.viewers": ("CT_WINDOW", "slice_viewer", "plot_slices"),
    "teaching.view3d": ("view_3d",),
}
_HOME = {name: module for module, names in _FACE.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Import the module that holds ``name`` on first use (PEP 562)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'spleen_helpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
