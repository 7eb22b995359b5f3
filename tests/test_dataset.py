"""Tests of spleen_helpers.data.dataset: finding, checking, listing, splitting and downloading data."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spleen_helpers.tools.cli import main
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.data.dataset import CaseInfo, find_dataset, load_datalist, sample_ct, split_datalist, validate_case, validate_dataset
from spleen_helpers.data.download import download_msd_spleen
from spleen_helpers.ground.errors import ConfigError, DataError
from tests.support import LocalServer, without_proxies

AFFINE = np.diag([-1.5, -1.5, 3.0, 1.0])


# ---------------------------------------------------------------------------------- helpers
def _save(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _case(shape=(8, 8, 4), spleen: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(-100, 200, size=shape).astype(np.int16)
    label = np.zeros(shape, dtype=np.uint8)
    label.flat[:spleen] = 1
    return image, label


def make_dataset(root: Path, names: list[str], shape=(8, 8, 4)) -> Path:
    """A tiny MSD-layout data set whose dataset.json lists ``names`` in the given order."""
    training = []
    for i, name in enumerate(names):
        image, label = _case(shape, spleen=3 + i, seed=i)
        _save(image, root / "imagesTr" / f"{name}.nii.gz")
        _save(label, root / "labelsTr" / f"{name}.nii.gz")
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    meta = {"name": "Spleen", "numTraining": len(names), "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def assert_one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


def names_of(files: list[dict]) -> list[str]:
    return [Path(f["image"]).name.split(".")[0] for f in files]


TWELVE = [f"spleen_{k}" for k in range(1, 13)]


@pytest.fixture
def twelve(tmp_path: Path) -> Path:
    shuffled = TWELVE[:]
    random.Random(3).shuffle(shuffled)
    return make_dataset(tmp_path / "twelve", shuffled)


# ------------------------------------------------------------------------- find and list
def test_find_dataset_synthetic(synthetic_dir: Path) -> None:
    assert find_dataset(synthetic_dir) == synthetic_dir.resolve()


def test_find_dataset_accepts_parent_of_task09(tmp_path: Path) -> None:
    inner = make_dataset(tmp_path / "Task09_Spleen", ["spleen_1", "spleen_2"])
    assert find_dataset(tmp_path) == inner.resolve()
    assert find_dataset(inner) == inner.resolve()


def test_load_datalist_synthetic(synthetic_dir: Path) -> None:
    files = load_datalist(synthetic_dir)
    assert names_of(files) == [f"spleen_{k}" for k in range(1, 7)]
    for f in files:
        assert sorted(f) == ["image", "label"]
        assert Path(f["image"]).is_absolute() and Path(f["image"]).is_file()
        assert Path(f["label"]).is_file() and "labelsTr" in f["label"]
        assert Path(f["image"]).name == Path(f["label"]).name


def test_load_datalist_sorts_by_file_name_like_the_tutorial(twelve: Path) -> None:
    files = load_datalist(twelve)
    # sorted() on names is lexicographic: spleen_10 comes before spleen_2, as in the tutorial
    assert names_of(files) == sorted(TWELVE)
    assert names_of(files)[:5] == ["spleen_1", "spleen_10", "spleen_11", "spleen_12", "spleen_2"]
    listed = json.loads((twelve / "dataset.json").read_text())["training"]
    assert [Path(e["image"]).name for e in listed] != [Path(f["image"]).name for f in files]


def test_split_default_keeps_last_val_count(twelve: Path) -> None:
    files = load_datalist(twelve)
    train, val = split_datalist(files, CourseConfig())  # the tutorial's 9 validation cases
    assert len(val) == 9 and len(train) == 3
    assert names_of(train) == ["spleen_1", "spleen_10", "spleen_11"]
    assert val == files[-9:] and train + val == files


def test_split_fraction_and_determinism(twelve: Path) -> None:
    files = load_datalist(twelve)
    train, val = split_datalist(files, CourseConfig(val_fraction=0.25))
    assert (len(train), len(val)) == (9, 3)
    assert names_of(val) == ["spleen_7", "spleen_8", "spleen_9"]
    shuffled = files[:]
    random.Random(1).shuffle(shuffled)
    assert split_datalist(shuffled, CourseConfig(val_fraction=0.25)) == (train, val)
    assert split_datalist(files, CourseConfig(val_fraction=0.25)) == (train, val)


def test_split_synthetic_config(synthetic_dir: Path) -> None:
    train, val = split_datalist(load_datalist(synthetic_dir), CourseConfig.synthetic())
    assert (len(train), len(val)) == (2, 4)
    assert not {f["image"] for f in train} & {f["image"] for f in val}


@pytest.mark.parametrize("cfg, words", [
    (CourseConfig(val_count=12), "no training case"),
    (CourseConfig(val_count=20), "no training case"),
    (CourseConfig(val_count=0), "no validation case"),
    (CourseConfig(val_fraction=0.01), "no validation case"),
    (CourseConfig(val_fraction=0.99), "no training case"),
])
def test_split_errors(twelve: Path, cfg: CourseConfig, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        split_datalist(load_datalist(twelve), cfg)
    assert_one_line(exc, words, "12")


# --------------------------------------------------------------------- find_dataset errors
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        find_dataset(tmp_path / "nope")
    assert_one_line(exc, str(tmp_path / "nope"), "does not exist")


def test_folder_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError) as exc:
        find_dataset(tmp_path / "f")
    assert_one_line(exc, str(tmp_path / "f"), "not a folder")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        find_dataset(tmp_path / "empty")
    assert_one_line(exc, "empty", "empty", "dataset.json")


def test_no_dataset_json(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", ["spleen_1"])
    (root / "dataset.json").unlink()
    with pytest.raises(DataError) as exc:
        find_dataset(root)
    assert_one_line(exc, str(root), "no dataset.json")


def test_invalid_json_names_line(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", ["spleen_1"])
    text = (root / "dataset.json").read_text().splitlines()
    text[3] = text[3] + ","  # a stray comma on line 4
    (root / "dataset.json").write_text("\n".join(text))
    with pytest.raises(DataError) as exc:
        find_dataset(root)
    msg = assert_one_line(exc, str(root / "dataset.json"), "not valid JSON", "line ")
    assert "line 4" in msg or "line 5" in msg


@pytest.mark.parametrize("meta, words", [
    ([1, 2], "JSON object"),
    ({"name": "Spleen"}, 'no "training" key'),
    ({"training": {"image": "a"}}, "must be a list"),
    ({"training": []}, "no cases"),
    ({"training": ["./imagesTr/spleen_1.nii.gz"]}, "entry 0"),
    ({"training": [{"image": "./imagesTr/spleen_1.nii.gz"}]}, '"label"'),
])
def test_malformed_dataset_json(tmp_path: Path, meta, words: str) -> None:
    root = make_dataset(tmp_path / "d", ["spleen_1"])
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as exc:
        find_dataset(root)
    assert_one_line(exc, str(root / "dataset.json"), words)


def test_missing_labels_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", ["spleen_1"])
    shutil.rmtree(root / "labelsTr")
    with pytest.raises(DataError) as exc:
        load_datalist(root)
    assert_one_line(exc, str(root / "labelsTr"), "missing")


def test_listed_files_missing(twelve: Path) -> None:
    for name in ("spleen_3", "spleen_7"):
        (twelve / "labelsTr" / f"{name}.nii.gz").unlink()
    listed = json.loads((twelve / "dataset.json").read_text())["training"]
    first = next(twelve / e["label"] for e in listed
                 if Path(e["label"]).name in {"spleen_3.nii.gz", "spleen_7.nii.gz"})
    with pytest.raises(DataError) as exc:
        load_datalist(twelve)
    assert_one_line(exc, str(first.resolve()), "2 of 24", "does not exist")


# ----------------------------------------------------------------------------- cases
def test_validate_case_reports_geometry_and_volume(tmp_path: Path) -> None:
    image, label = _case((10, 9, 6), spleen=40)
    img = _save(image, tmp_path / "i.nii.gz")
    lab = _save(label, tmp_path / "l.nii.gz")
    info = validate_case(img, lab)
    assert isinstance(info, CaseInfo)
    assert info.shape == (10, 9, 6)
    assert info.spacing == (1.5, 1.5, 3.0)
    assert info.orientation == ("L", "P", "S")
    assert info.label_voxels == 40
    assert info.spleen_ml == pytest.approx(40 * 1.5 * 1.5 * 3.0 / 1000)
    assert info.image == img and info.label == lab and info.name == "i"


def test_validate_dataset_synthetic(synthetic_dir: Path) -> None:
    infos = validate_dataset(synthetic_dir)
    assert [i.name for i in infos] == [f"spleen_{k}" for k in range(1, 7)]
    for info in infos:
        assert info.orientation == ("L", "P", "S")
        label = np.asanyarray(nib.load(info.label).dataobj)
        assert info.label_voxels == int(label.sum()) > 0
        assert 5 < info.spleen_ml < 2000
    quick = validate_dataset(synthetic_dir, check_all=False)
    assert quick[0] == infos[0]
    assert all(q.label_voxels is None and q.shape == i.shape for q, i in zip(quick[1:], infos[1:]))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    image, label = _case((12, 12, 6), spleen=30)
    return _save(image, tmp_path / "img.nii.gz"), _save(label, tmp_path / "lab.nii.gz")


def test_truncated_image(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(img), "corrupt or truncated")


def test_corrupt_gzip_block_is_caught(pair: tuple[Path, Path]) -> None:
    """Damage after the voxel data nibabel reads: only reading the whole stream finds it."""
    img, lab = pair
    raw = bytearray(img.read_bytes())
    raw[-6] ^= 0xFF  # the gzip trailer's CRC
    img.write_bytes(bytes(raw))
    assert np.asanyarray(nib.load(img).dataobj).shape == (12, 12, 6)  # nibabel alone is fooled
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(img), "corrupt")


def test_multi_member_gzip_reads_every_member(tmp_path: Path) -> None:
    """A ``.nii.gz`` written as two gzip members (``cat a.gz b.gz``) reads whole, as gzip does."""
    from spleen_helpers.data.nifti import open_nifti

    voxels = np.arange(12 * 12 * 6, dtype=np.int16).reshape(12, 12, 6)
    raw = nib.Nifti1Image(voxels, np.eye(4)).to_bytes()
    path = tmp_path / "two_members.nii.gz"
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    _, read = open_nifti(path, read_data=True)
    np.testing.assert_array_equal(read, voxels)
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])[:-9])  # second member cut
    with pytest.raises(DataError) as exc:
        open_nifti(path, read_data=True)
    assert_one_line(exc, str(path), "corrupt or truncated")


def test_not_an_image(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    lab.write_text("this is not a NIfTI file\n")
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(lab), "not a readable NIfTI")


def test_gzip_of_garbage(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    img.write_bytes(gzip.compress(b"\x01" * 2000))
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(img))


def test_missing_file(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    lab.unlink()
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(lab), "does not exist")


def test_shape_mismatch(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    _save(np.zeros((12, 12, 5), np.uint8), lab)
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(lab), "(12, 12, 5)", "(12, 12, 6)", "img.nii.gz")


def test_affine_mismatch_and_tolerance(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    label = np.asanyarray(nib.load(lab).dataobj)
    nudged = AFFINE.copy()
    nudged[0, 3] += 1e-5
    _save(label, lab, nudged)
    assert validate_case(img, lab).label_voxels == 30  # float noise is accepted
    shifted = AFFINE.copy()
    shifted[2, 3] += 0.5
    _save(label, lab, shifted)
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(lab), "affine", "0.5")


def test_not_3d(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    _save(np.zeros((12, 12, 6, 2), np.int16), img)
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    assert_one_line(exc, str(img), "4-D")


@pytest.mark.parametrize("values, shown", [((0, 1, 2), "2"), ((0, 255), "255"), ((0.0, 0.5, 1.0), "0.5")])
def test_label_values(pair: tuple[Path, Path], values, shown: str) -> None:
    img, lab = pair
    label = np.zeros((12, 12, 6), np.float32 if isinstance(values[1], float) else np.uint8)
    for k, v in enumerate(values):
        label.flat[k * 10:(k + 1) * 10] = v
    _save(label, lab)
    with pytest.raises(DataError) as exc:
        validate_case(img, lab)
    msg = assert_one_line(exc, str(lab), "other than 0 and 1", shown)
    assert "found" in msg


def test_empty_label_warns(pair: tuple[Path, Path]) -> None:
    img, lab = pair
    _save(np.zeros((12, 12, 6), np.uint8), lab)
    with pytest.warns(UserWarning, match="label is empty") as record:
        info = validate_case(img, lab)
    assert str(lab) in str(record[0].message)
    assert info.label_voxels == 0 and info.spleen_ml == 0.0


def test_validate_dataset_finds_bad_case(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", ["spleen_1", "spleen_2", "spleen_3"])
    bad = root / "labelsTr" / "spleen_3.nii.gz"
    _save(np.full((8, 8, 4), 2, np.uint8), bad)
    assert len(validate_dataset(root, check_all=False)) == 3  # headers alone look fine
    with pytest.raises(DataError) as exc:
        validate_dataset(root)
    assert_one_line(exc, str(bad.resolve()), "2")


def test_sample_ct_is_in_the_checkout() -> None:
    s = sample_ct()
    assert s.root == Path(__file__).resolve().parents[1] / "data" / "samples" / "totalsegmentator"
    assert len(list(s.dicom_dir.iterdir())) == 20
    assert "Apache License" in s.licence.read_text()
    readme = (s.root / "README.md").read_text()
    assert "TotalSegmentator" in readme and "not manual annotations" in readme
    assert nib.load(s.ct).shape == nib.load(s.ct_spleen).shape == (122, 101, 112)
    assert nib.load(s.dicom_seg).shape == (512, 512, 20)


def test_sample_ct_of_an_installed_package_is_found_under_share(tmp_path: Path, monkeypatch) -> None:
    """A wheel installs the sample as data files under <prefix>/share/spleen-course/."""
    import sysconfig

    import spleen_helpers.data.dataset as data

    prefix = tmp_path / "prefix"
    shutil.copytree(sample_ct().root, prefix / "share" / "spleen-course" / "samples" / "totalsegmentator")
    monkeypatch.setattr(data, "PACKAGE_DIR", tmp_path / "site-packages" / "spleen_helpers")
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(prefix) if name == "data" else "")
    s = sample_ct()
    assert s.root == prefix / "share" / "spleen-course" / "samples" / "totalsegmentator"
    assert s.ct.is_file() and s.dicom_dir.is_dir()
    # Without the files anywhere: one line naming where it looked.
    shutil.rmtree(prefix)
    monkeypatch.setattr(data, "_sample_ct_candidates", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataError) as exc:
        sample_ct()
    assert_one_line(exc, str(tmp_path / "a"), str(tmp_path / "b"), "sample CT is not there")


def test_validate_real_ct(tmp_path: Path) -> None:
    """The real abdominal CT and its spleen mask, laid out as a one-case MSD data set."""
    src = sample_ct()
    root = tmp_path / "Task09_Spleen"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(src.ct, root / "imagesTr" / "spleen_1.nii.gz")
    shutil.copy(src.ct_spleen, root / "labelsTr" / "spleen_1.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}]}))
    [info] = validate_dataset(tmp_path)
    assert info.shape == (122, 101, 112) and info.spacing == (3.0, 3.0, 3.0)
    assert info.orientation == ("R", "A", "S")
    assert info.label_voxels == 9677
    assert info.spleen_ml == pytest.approx(9677 * 27 / 1000)


def test_real_multilabel_mask_is_refused() -> None:
    seg = sample_ct().dicom_seg
    with pytest.raises(DataError) as exc:
        validate_case(seg, seg)
    assert_one_line(exc, str(seg), "other than 0 and 1", "found 5, 6, 7")
    with pytest.raises(DataError) as exc:
        validate_case(sample_ct().ct, seg)
    assert_one_line(exc, str(seg), "(512, 512, 20)", "(122, 101, 112)")


# --------------------------------------------------------------------------- download
def _tar_bytes(tmp_path: Path, top: str = "Task09_Spleen") -> bytes:
    src = make_dataset(tmp_path / "tar-src" / top, ["spleen_1", "spleen_2"])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname=top)
    return buf.getvalue()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


@pytest.fixture
def server(tmp_path: Path, no_proxy: None) -> Iterator[tuple[LocalServer, str, str]]:
    """A local HTTP server with a tiny Task09_Spleen.tar; yields (server, url, md5)."""
    body = _tar_bytes(tmp_path)
    srv = LocalServer({"/Task09_Spleen.tar": body, "/other.tar": _tar_bytes(tmp_path, "Other")})
    srv.thread.start()
    try:
        yield srv, srv.url("/Task09_Spleen.tar"), hashlib.md5(body).hexdigest()
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_then_reuse(server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    srv, url, md5 = server
    root = tmp_path / "root"
    out = download_msd_spleen(root, url=url, md5=md5, progress=False)
    assert out == (root / "Task09_Spleen").resolve()
    assert _leftovers(root) == ["Task09_Spleen"]  # no archive, no temporary folder
    assert names_of(load_datalist(root)) == ["spleen_1", "spleen_2"]
    assert [i.label_voxels for i in validate_dataset(out)] == [3, 4]
    assert srv.requests == ["/Task09_Spleen.tar"]
    capsys.readouterr()
    again = download_msd_spleen(root, url=url, md5=md5, progress=False)
    assert again == out and srv.requests == ["/Task09_Spleen.tar"]  # nothing downloaded
    assert "already" in capsys.readouterr().out


def test_download_wrong_md5_leaves_nothing(server, tmp_path: Path) -> None:
    srv, url, md5 = server
    root = tmp_path / "root"
    wrong = "0" * 32
    with pytest.raises(DataError) as exc:
        download_msd_spleen(root, url=url, md5=wrong, progress=False)
    assert_one_line(exc, "Task09_Spleen.tar", md5, wrong)
    assert _leftovers(root) == []  # no data set, no archive, no partial extraction
    with pytest.raises(DataError):
        find_dataset(root)
    # a later run starts from scratch and succeeds
    assert find_dataset(download_msd_spleen(root, url=url, md5=md5, progress=False))
    assert len(srv.requests) == 2


def test_download_server_down(tmp_path: Path, no_proxy: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Task09_Spleen.tar"  # nothing listens there now
    root = tmp_path / "root"
    with pytest.raises(DataError) as exc:
        download_msd_spleen(root, url=url, md5="0" * 32, progress=False)
    assert_one_line(exc, url, "network unreachable")
    assert _leftovers(root) == []


def test_download_http_error(server, tmp_path: Path) -> None:
    srv, url, md5 = server
    with pytest.raises(DataError) as exc:
        download_msd_spleen(tmp_path / "root", url=srv.url("/missing.tar"), md5=md5, progress=False)
    assert_one_line(exc, "/missing.tar", "HTTP 404")
    assert _leftovers(tmp_path / "root") == []


def test_download_archive_without_task_folder(server, tmp_path: Path) -> None:
    srv, _, _ = server
    body = srv.routes["/other.tar"]
    with pytest.raises(DataError) as exc:
        download_msd_spleen(tmp_path / "root", url=srv.url("/other.tar"),
                            md5=hashlib.md5(body).hexdigest(), progress=False)
    assert_one_line(exc, "other.tar", "does not contain a Task09_Spleen/")
    assert _leftovers(tmp_path / "root") == []


def test_download_refuses_incomplete_existing_folder(server, tmp_path: Path) -> None:
    srv, url, md5 = server
    root = tmp_path / "root"
    make_dataset(root / "Task09_Spleen", ["spleen_1"])
    (root / "Task09_Spleen" / "imagesTr" / "spleen_1.nii.gz").unlink()
    with pytest.raises(DataError) as exc:
        download_msd_spleen(root, url=url, md5=md5, progress=False)
    assert_one_line(exc, "not a complete data set", "spleen_1.nii.gz")
    assert srv.requests == []


def test_download_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError) as exc:
        download_msd_spleen(tmp_path / "file", url="http://127.0.0.1:9/x.tar", md5="0" * 32)
    assert_one_line(exc, str(tmp_path / "file"), "not a folder")


def test_download_rejects_malformed_md5(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        download_msd_spleen(tmp_path / "root", url="http://127.0.0.1:9/x.tar", md5="abc")
    assert_one_line(exc, "md5", "'abc'")
    assert not (tmp_path / "root").exists()


# --------------------------------------------------------------------------------- CLI
def test_cli_download(server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    srv, url, md5 = server
    root = tmp_path / "root"
    assert main(["download", "--root", str(root), "--url", url, "--md5", md5]) == 0
    out, err = capsys.readouterr()
    assert f"data set: {(root / 'Task09_Spleen').resolve()}" in out
    assert "Task09_Spleen.tar" in err  # the progress bar
    assert main(["download", "--root", str(root), "--url", url, "--md5", md5, "--no-progress"]) == 0
    assert "already" in capsys.readouterr().out and len(srv.requests) == 1


def test_cli_download_bad_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["download", "--root", str(tmp_path / "file"), "--url",
                 "http://127.0.0.1:9/Task09_Spleen.tar", "--md5", "0" * 32]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path / "file") in err


def test_cli_download_wrong_md5(server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    srv, url, md5 = server
    assert main(["download", "--root", str(tmp_path / "r"), "--url", url, "--md5", "1" * 32,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1" * 32 in err and md5 in err
    assert not (tmp_path / "r" / "Task09_Spleen").exists()


# ------------------------------------------------------------ headers and anatomy
def test_a_header_whose_qform_and_sform_disagree_gets_one_line(tmp_path: Path) -> None:
    from spleen_helpers.data.nifti import open_nifti

    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.set_qform(np.diag([-2.0, -2.0, 2.0, 1.0]), code=1)
    nib.save(img, tmp_path / "split.nii.gz")
    with pytest.warns(UserWarning) as caught:
        opened, _ = open_nifti(tmp_path / "split.nii.gz")
    [message] = [str(w.message) for w in caught]
    assert message == (f"{tmp_path / 'split.nii.gz'}: its qform says LPS and its sform says RAS: "
                       "the course uses the sform (as nibabel does)")
    assert nib.aff2axcodes(opened.affine) == ("R", "A", "S")


@pytest.mark.parametrize("qcode", [0, 1])
def test_a_header_that_agrees_with_itself_or_has_one_field_says_nothing(tmp_path: Path, qcode: int) -> None:
    import warnings

    from spleen_helpers.data.nifti import open_nifti

    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_qform(np.diag([-2.0, -2.0, 2.0, 1.0]) if qcode == 0 else img.affine, code=qcode)
    img.set_sform(img.affine, code=1)
    nib.save(img, tmp_path / "one.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_nifti(tmp_path / "one.nii.gz")


def test_validate_dataset_says_where_the_spleens_lie(synthetic_dir: Path, tmp_path: Path) -> None:
    from spleen_helpers.data.phantom import write_synthetic_dataset

    lines: list[str] = []
    infos = validate_dataset(synthetic_dir, log=lines.append)
    assert [i.side.verdict for i in infos] == ["as expected"] * 6
    assert lines == ["spleen side of 6 labelled cases: 6 as expected"]
    twin = write_synthetic_dataset(tmp_path / "twin", num_cases=3, seed=0, lps_as_ras=True, num_test=0)
    validate_dataset(twin, log=lines.append)
    assert lines[-1] == ("spleen side of 3 labelled cases: 3 turned; turned cases are read with x and y of "
                         "their header negated (TurnHeaderd)")
    assert validate_dataset(twin, check_all=False, log=lines.append)[1].side is None   # not read, not judged
