"""The data-path picture: six stages in the course's order, drawn by code, and the README's copy
is the one the module draws."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from spleen_helpers.teaching.course_map import DATA_PATH, plot_data_path

ROOT = Path(__file__).resolve().parents[1]


def test_the_path_runs_from_dicom_to_seg_through_every_notebook() -> None:
    assert [s.title for s in DATA_PATH] == ["DICOM series", "NIfTI volume", "transforms", "network", "mask",
                                            "DICOM SEG"]
    assert sorted({s.notebook for s in DATA_PATH}) == ["01", "02", "03", "04", "05"]
    texts = [t.get_text() for t in plot_data_path().axes[0].texts]
    assert [t for t in texts if t in {s.title for s in DATA_PATH}] == [s.title for s in DATA_PATH]


def test_the_readme_shows_the_picture_the_module_draws(tmp_path: Path) -> None:
    """``python -m spleen_helpers.teaching.course_map docs/img/data_path.png`` redraws the committed file."""
    import subprocess
    import sys

    assert "](docs/img/data_path.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
    out = tmp_path / "data_path.png"
    subprocess.run([sys.executable, "-m", "spleen_helpers.teaching.course_map", str(out)], check=True, timeout=120)
    committed = np.asarray(Image.open(ROOT / "docs" / "img" / "data_path.png").convert("L"), float)
    drawn = np.asarray(Image.open(out).convert("L"), float)
    assert committed.std() > 20                          # boxes and text, not a blank picture
    assert committed.shape == drawn.shape and np.abs(committed - drawn).mean() < 2.0, (
        "docs/img/data_path.png is stale: redraw it with python -m spleen_helpers.teaching.course_map "
        "docs/img/data_path.png")
