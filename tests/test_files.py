"""Atomic writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spleen_helpers.ground.files import atomic_path, write_json_atomic


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_success_moves_the_file_into_place(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "dir" / "out.txt"  # parents are created
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        assert not final.exists()  # nothing under the final name while writing
        tmp.write_text("complete")
    assert final.read_text() == "complete"
    assert leftovers(final.parent) == []


def test_a_failing_block_leaves_no_partial_file(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(final) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("disk full")
    assert not final.exists()
    assert leftovers(tmp_path) == []


def test_the_old_file_is_replaced_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "model.json"
    final.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(final) as tmp:
            tmp.write_text("new but unfinished")
            raise KeyboardInterrupt  # even an interrupt leaves the old file intact
    assert final.read_text() == "old" and leftovers(tmp_path) == []
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new" and leftovers(tmp_path) == []


def test_the_temporary_file_keeps_the_suffixes(tmp_path: Path) -> None:
    final = tmp_path / "image.nii.gz"
    with atomic_path(final) as tmp:
        assert tmp.name.endswith(".nii.gz")  # writers that pick the format by extension work
        nib.save(nib.Nifti1Image(np.ones((2, 3, 4), dtype=np.int16), np.eye(4)), tmp)
    assert nib.load(final).shape == (2, 3, 4)
    with atomic_path(tmp_path / "x.ipynb", suffix=".tmp") as tmp:
        assert tmp.name.endswith(".tmp")
        tmp.write_text("{}")


def test_write_json_atomic(tmp_path: Path) -> None:
    final = tmp_path / "summary.json"
    obj = {"dice": 0.9, "path": tmp_path, "epochs": [1, 2]}  # Paths are written as text
    assert write_json_atomic(obj, final) == final
    assert json.loads(final.read_text()) == {"dice": 0.9, "path": str(tmp_path), "epochs": [1, 2]}
    assert final.read_text().endswith("\n") and leftovers(tmp_path) == []


def test_write_json_atomic_keeps_the_old_file_when_the_object_cannot_be_written(tmp_path: Path) -> None:
    final = tmp_path / "summary.json"
    write_json_atomic({"ok": True}, final)
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        write_json_atomic(circular, final)
    assert json.loads(final.read_text()) == {"ok": True} and leftovers(tmp_path) == []


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from spleen_helpers.ground.files import write_json_atomic

    old = os.umask(0o022)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_nifti_atomic_writes_the_geometry_every_reader_agrees_on(tmp_path: Path) -> None:
    """qform and sform both carry the affine (code 1, scanner), units are millimetres, and
    nibabel and MONAI's LoadImage read back the same LPS, anisotropic, shifted affine."""
    from monai.transforms import LoadImage

    from spleen_helpers.ground.files import save_nifti_atomic

    affine = np.array([[-2.5, 0.0, 0.0, 120.0],
                       [0.0, -1.5, 0.0, 100.0],
                       [0.0, 0.0, 6.0, -70.0],
                       [0.0, 0.0, 0.0, 1.0]])
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    path = save_nifti_atomic(data, affine, tmp_path / "ct.nii.gz", description="synthetic case 1")
    assert leftovers(tmp_path) == []
    img = nib.load(path)
    qform, qcode = img.get_qform(coded=True)
    sform, scode = img.get_sform(coded=True)
    assert (int(qcode), int(scode)) == (1, 1)
    np.testing.assert_allclose(qform, affine, atol=1e-5)
    np.testing.assert_allclose(sform, affine, atol=1e-6)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header["descrip"].tobytes().rstrip(b"\0") == b"synthetic case 1"
    assert np.array_equal(np.asanyarray(img.dataobj), data)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    loaded = LoadImage(reader="NibabelReader", image_only=True)(str(path))
    np.testing.assert_allclose(loaded.affine.numpy(), img.affine, atol=1e-6)
    np.testing.assert_allclose(loaded.pixdim.numpy()[:3], [2.5, 1.5, 6.0], atol=1e-6)
    assert np.array_equal(loaded.numpy(), data)
