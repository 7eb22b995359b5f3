"""spleen_helpers: the tested helper package behind the spleen-course notebooks.

Modules, in the direction data flows (each imports only modules listed before it):
``errors``/``fileio``/``config``/``figures`` → ``data``/``dicom``/``synthetic`` →
``transforms`` (``inspect_transforms``) → ``model`` (``inspect_model``) →
``checkpoint``/``history``/``train`` → ``evaluate`` → ``viz``; ``cli`` and ``course`` (the
papermill runner) sit on top, and ``notebook_setup`` defines the notebooks' opening cells.
"""

__version__ = "0.1.0"

import logging as _logging
import warnings as _warnings

# MONAI 1.6 builds a GPU DICOM reader inside every LoadImage and, without nvImageCodec (a
# CUDA-only extra), logs and warns that it falls back to pydicom. The course reads NIfTI with
# nibabel, so this message is noise for every student; silence exactly that message.
_logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin")
