"""spleen_helpers: the tested helper package behind the spleen-course notebooks.

The pipeline modules fan out from a small foundation (each imports only modules named before
it, never a tool):

* foundation: ``errors``, ``fileio``, ``config``, ``figures``;
* data in: ``data`` (the Task09 layout, NIfTI checks, download, the committed sample CT),
  ``dicom`` (study folders and series to NIfTI), ``dicom_seg`` (a mask back to the DICOM
  slices, as a DICOM Segmentation), ``synthetic`` (the CT phantom and its DICOM export);
* the network: ``transforms`` (``inspect_transforms``), ``model`` (``inspect_model``),
  ``checkpoint``, ``history``;
* the work: ``pretrained`` (MONAI's pretrained spleen bundle), ``train`` (and the choice of
  weights), ``distributed`` (training with several processes: ``--nproc``, torchrun),
  ``predict``, ``evaluate`` (which uses ``predict``, never ``train``), ``viz``;
* ``compare``: proofs that the notebooks' hand-written code equals the package's.

``spleen_helpers.tools`` sits on top: the ``spleen-course`` command (``cli``), the papermill
course runner (``course``) and the writer of the notebooks' opening cells
(``notebook_cells``). docs/architecture.md draws the graph.
"""

__version__ = "0.1.0"

import logging as _logging
import warnings as _warnings

# MONAI 1.6 builds a GPU DICOM reader inside every LoadImage and, without nvImageCodec (a
# CUDA-only extra), logs and warns that it falls back to pydicom. The course reads NIfTI with
# nibabel, so this message is noise for every student; silence exactly that message.
_logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin")
