"""The pretrained bundle: downloaded with MONAI's bundle download from a server on 127.0.0.1
that serves bundle archives built here from a randomly initialised UNet (success, nothing
downloaded twice, wrong md5, server gone, HTTP errors, a different network or preprocessing,
weights fetched from large_files.yml), its settings read from its config, and the choice of
weights for notebooks and the CLI."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from spleen_helpers.engine.checkpoint import load_checkpoint
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.errors import CheckpointError, DataError
from spleen_helpers.engine.model import build_unet
from spleen_helpers.engine.bundle import BUNDLE_NAME, bundle_config, download_pretrained, find_pretrained, open_bundle
from spleen_helpers.engine.weights import load_model_or_bundle
from spleen_helpers.tools.cli import main
from spleen_helpers.engine.weights import choose_model
from spleen_helpers.engine.transforms import infer_transforms
from tests.support import LocalServer, save_tiny_model, without_proxies

# The layout and settings of MONAI's spleen_ct_segmentation bundle (configs/inference.json).
NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
           "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2,
           "norm": "batch"}
INFERENCE = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": NETWORK,
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -57, "a_max": 164,
         "b_min": 0, "b_max": 1, "clip": True},
        {"_target_": "EnsureTyped", "keys": "@image_key"},
    ]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4,
                "overlap": 0.5},
    "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                         "load_dict": {"model": "@network"}},
}


@pytest.fixture(scope="module")
def weights() -> bytes:
    """A randomly initialised UNet of the bundle's shape, saved as a plain state dict."""
    torch.manual_seed(7)
    buf = io.BytesIO()
    torch.save(build_unet(CourseConfig()).state_dict(), buf)
    return buf.getvalue()


def bundle_zip(weights: bytes, *, inference: dict | None = None, md5: str | None = None,
               with_weights: bool = True, weights_url: str = "https://example.invalid/model.pt",
               top: str = BUNDLE_NAME) -> bytes:
    """A bundle archive as the model zoo packs it: ``<top>/configs/..., models/model.pt, large_files.yml``."""
    md5 = md5 or hashlib.md5(weights).hexdigest()
    large_files = (f'large_files:\n  - path: "models/model.pt"\n    url: "{weights_url}"\n'
                   f'    hash_val: "{md5}"\n    hash_type: "md5"\n')
    metadata = {"version": "0.6.0", "monai_version": "1.4.0", "name": "Spleen CT segmentation",
                "changelog": {"0.6.0": "a test bundle"}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{top}/configs/metadata.json", json.dumps(metadata))
        z.writestr(f"{top}/configs/inference.json", json.dumps(inference or INFERENCE, indent=2))
        z.writestr(f"{top}/large_files.yml", large_files)
        z.writestr(f"{top}/docs/README.md", "# a test bundle\n")
        if with_weights:
            z.writestr(f"{top}/models/model.pt", weights)
    return buf.getvalue()


def with_network(**changes) -> dict:
    cfg = copy.deepcopy(INFERENCE)
    cfg["network_def"].update(changes)
    return cfg


@pytest.fixture
def server(weights: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    without_proxies(monkeypatch)
    srv = LocalServer({})
    srv.routes.update({
        "/bundle.zip": bundle_zip(weights),
        "/wrong-md5.zip": bundle_zip(weights, md5="0" * 32),
        "/other-net.zip": bundle_zip(weights, inference=with_network(channels=[32, 64, 128, 256, 512])),
        "/instance-norm.zip": bundle_zip(weights, inference=with_network(norm="instance")),
        "/other-top.zip": bundle_zip(weights, top="something_else"),
        "/model.pt": weights,
        "/no-weights.zip": b"",  # filled in below, once the server's port is known
    })
    srv.routes["/no-weights.zip"] = bundle_zip(weights, with_weights=False, weights_url=srv.url("/model.pt"))
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


# ------------------------------------------------------------------------------ download
def test_download_checks_and_loads_the_bundle_then_does_nothing_the_second_time(
        server: LocalServer, weights: bytes, tmp_path: Path) -> None:
    logged: list[str] = []
    bundle = download_pretrained(tmp_path / "pre", url=server.url("/bundle.zip"), progress=False,
                                 log=logged.append)
    assert bundle.path == tmp_path / "pre" / BUNDLE_NAME and bundle.version == "0.6.0"
    assert leftovers(tmp_path / "pre") == [BUNDLE_NAME]     # no zip, no temporary folder
    assert bundle.weights_md5 == hashlib.md5(weights).hexdigest()
    assert bundle.weights.read_bytes() == weights
    model, cfg = bundle.load("cpu")
    original = torch.load(io.BytesIO(weights), weights_only=True)
    for name, tensor in model.state_dict().items():         # the weights served, not fresh ones
        assert torch.equal(tensor, original[name]), name
    assert not model.training
    assert server.requests == ["/bundle.zip"]
    assert "ready" in logged[-1] and "0.6.0" in logged[-1]

    again = download_pretrained(tmp_path / "pre", url=server.url("/bundle.zip"), progress=False,
                                log=logged.append)
    assert again == bundle and server.requests == ["/bundle.zip"]   # nothing downloaded
    assert logged[-1].startswith("already downloaded")
    assert find_pretrained(tmp_path / "pre") == bundle


def test_settings_come_from_the_bundles_config(server: LocalServer, tmp_path: Path) -> None:
    bundle = download_pretrained(tmp_path, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    cfg = bundle.config
    assert cfg == bundle_config(bundle.path)
    assert (cfg.orientation, cfg.pixdim, cfg.a_min, cfg.a_max, cfg.b_min, cfg.b_max, cfg.clip) == \
        ("RAS", (1.5, 1.5, 2.0), -57.0, 164.0, 0.0, 1.0, True)
    assert (cfg.roi_size, cfg.sw_batch_size, cfg.overlap) == ((96, 96, 96), 4, 0.5)
    assert cfg.model_signature() == CourseConfig().model_signature()
    assert cfg.transform_order == "bundle"
    names = [type(t).__name__ for t in infer_transforms(cfg).transforms]
    assert names == ["LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd", "ScaleIntensityRanged"]

    # A value changed in the config changes the settings: they are read, not retyped.
    changed = copy.deepcopy(INFERENCE)
    changed["preprocessing"]["transforms"][3]["pixdim"] = [2.0, 2.0, 3.0]
    changed["inferer"]["overlap"] = 0.25
    (bundle.path / "configs" / "inference.json").write_text(json.dumps(changed))
    other = bundle_config(bundle.path)
    assert other.pixdim == (2.0, 2.0, 3.0) and other.overlap == 0.25


def test_wrong_md5_is_refused_and_leaves_nothing(server: LocalServer, weights: bytes, tmp_path: Path) -> None:
    root = tmp_path / "pre"
    with pytest.raises(CheckpointError) as exc:
        download_pretrained(root, url=server.url("/wrong-md5.zip"), progress=False, log=lambda _: None)
    one_line(exc, "model.pt", hashlib.md5(weights).hexdigest(), "0" * 32, "large_files.yml")
    assert leftovers(root) == []
    assert find_pretrained(root) is None
    # a later download of a good archive succeeds from scratch
    assert download_pretrained(root, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)


def test_server_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/bundle.zip"  # nothing listens there now
    with pytest.raises(DataError) as exc:
        download_pretrained(tmp_path / "pre", url=url, progress=False, log=lambda _: None)
    one_line(exc, url, "network unreachable")
    assert leftovers(tmp_path / "pre") == []


def test_http_error_and_an_archive_without_the_bundle(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        download_pretrained(tmp_path / "a", url=server.url("/missing.zip"), progress=False, log=lambda _: None)
    one_line(exc, "/missing.zip", "HTTP 404")
    with pytest.raises(DataError) as exc:
        download_pretrained(tmp_path / "b", url=server.url("/other-top.zip"), progress=False, log=lambda _: None)
    one_line(exc, "holds no spleen_ct_segmentation/ folder")
    assert leftovers(tmp_path / "a") == [] and leftovers(tmp_path / "b") == []


@pytest.mark.parametrize("route, words", [
    ("/other-net.zip", "channels [32, 64, 128, 256, 512] (the course's UNet: [16, 32, 64, 128, 256])"),
    ("/instance-norm.zip", "norm instance (the course's UNet: batch)"),
])
def test_a_bundle_with_another_network_is_refused(server: LocalServer, tmp_path: Path,
                                                  route: str, words: str) -> None:
    with pytest.raises(CheckpointError) as exc:
        download_pretrained(tmp_path, url=server.url(route), progress=False, log=lambda _: None)
    one_line(exc, "inference.json", "network_def is not the course's UNet", words)
    assert leftovers(tmp_path) == []


def test_missing_weights_are_fetched_as_large_files_yml_lists_them(
        server: LocalServer, weights: bytes, tmp_path: Path) -> None:
    bundle = download_pretrained(tmp_path, url=server.url("/no-weights.zip"), progress=False, log=lambda _: None)
    assert server.requests == ["/no-weights.zip", "/model.pt"]
    assert bundle.weights.read_bytes() == weights


def test_an_existing_damaged_bundle_is_named_not_replaced(server: LocalServer, tmp_path: Path) -> None:
    bundle = download_pretrained(tmp_path, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    with open(bundle.weights, "r+b") as fh:   # flip one byte of the weights
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(CheckpointError) as exc:
        download_pretrained(tmp_path, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    one_line(exc, str(bundle.path), "exists but is not a usable bundle", "delete it")
    assert server.requests == ["/bundle.zip"]


# ----------------------------------------------------------------------- reading configs
def _bundle_dir(tmp_path: Path, weights: bytes, inference: dict) -> Path:
    with zipfile.ZipFile(io.BytesIO(bundle_zip(weights, inference=inference))) as z:
        z.extractall(tmp_path)
    return tmp_path / BUNDLE_NAME


def test_preprocessing_the_course_cannot_reproduce_is_refused(weights: bytes, tmp_path: Path) -> None:
    cfg = copy.deepcopy(INFERENCE)
    cfg["preprocessing"]["transforms"].insert(
        5, {"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key"})
    with pytest.raises(CheckpointError) as exc:
        open_bundle(_bundle_dir(tmp_path, weights, cfg))
    one_line(exc, "inference.json", "CropForegroundd", "the course reproduces only")


def test_expressions_in_a_downloaded_config_are_never_run(weights: bytes, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cfg = copy.deepcopy(INFERENCE)
    cfg["preprocessing"]["transforms"][3]["pixdim"] = f"$open({str(marker)!r}, 'w').write('x') or [1, 1, 1]"
    with pytest.raises(CheckpointError) as exc:
        open_bundle(_bundle_dir(tmp_path, weights, cfg))
    one_line(exc, "Spacingd pixdim is an expression", "runs none of its code")
    assert not marker.exists()


def test_a_bundle_without_large_files_yml_cannot_be_checked(weights: bytes, tmp_path: Path) -> None:
    bundle = _bundle_dir(tmp_path, weights, INFERENCE)
    (bundle / "large_files.yml").unlink()
    with pytest.raises(CheckpointError) as exc:
        open_bundle(bundle)
    one_line(exc, "has no large_files.yml", "md5")


# ------------------------------------------------------------------------ choosing weights
def test_choose_model_prefers_real_anatomy_and_says_why(server: LocalServer, tmp_path: Path) -> None:
    """"auto": a model trained on real data, else the bundle, else the phantom model (the
    learner's, else the short fallback run), each with its reason; "phantom" is the last."""
    run_dir, fallback, pre = tmp_path / "run", tmp_path / "fallback", tmp_path / "pre"
    save_tiny_model(fallback)                     # reused: no training in this test
    said: list[str] = []
    kw = dict(run_dir=run_dir, bundle_root=pre, data_dir=tmp_path / "unused", fallback_dir=fallback,
              log=said.append)
    first = choose_model("auto", **kw)
    assert first.source == "fallback" and first.path == fallback / "best_metric_model.pth"
    assert not first.real_anatomy
    assert said[-1].startswith("weights: a short 1-epoch run on the phantom")
    assert "never seen real anatomy" in said[-1] and "no pretrained bundle" in said[-1]

    save_tiny_model(run_dir)                      # the learner's model, trained on the phantom
    second = choose_model("auto", **kw)
    assert second.source == "trained" and second.path == run_dir / "best_metric_model.pth"
    assert "trained on the phantom" in said[-1] and "never seen real anatomy" in said[-1]

    download_pretrained(pre, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    third = choose_model("auto", **kw)            # the bundle now comes before the phantom model
    assert third.source == "pretrained" and third.config.transform_order == "bundle" and third.real_anatomy
    assert "pretrained bundle, trained on real CTs" in said[-1] and "was trained on the phantom" in said[-1]
    phantom = choose_model("phantom", **kw)
    assert phantom.source == "trained" and phantom.config.profile == "synthetic"

    save_tiny_model(run_dir, profile="msd")       # a model trained on real data comes first
    fourth = choose_model("auto", **kw)
    assert fourth.source == "trained" and fourth.real_anatomy and fourth.config.channels == (4, 8, 16)
    assert "trained on real data (msd settings)" in said[-1]
    fallback_again = choose_model("phantom", **kw)   # never the real-data model
    assert fallback_again.source == "fallback" and fallback_again.path == fallback / "best_metric_model.pth"
    assert choose_model("pretrained", **kw).source == "pretrained"   # forced
    assert choose_model("trained", **kw).source == "trained"
    named = choose_model(str(pre / BUNDLE_NAME), **kw)
    assert named.source == "file" and named.config.roi_size == (96, 96, 96)


def test_a_download_that_gets_no_answer_gives_up_after_its_timeout(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and never answers (a firewall's black hole, a
    captive portal) costs ``timeout`` seconds, not the system's minutes; nothing is left behind
    and the process's default socket timeout is restored."""
    import time

    without_proxies(monkeypatch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)                              # connections queue up; nobody ever answers
    try:
        before = socket.getdefaulttimeout()
        t0 = time.perf_counter()
        with pytest.raises(DataError) as exc:
            download_pretrained(tmp_path, url=f"http://127.0.0.1:{silent.getsockname()[1]}/bundle.zip",
                                progress=False, timeout=0.5, log=lambda _: None)
        assert time.perf_counter() - t0 < 10
        one_line(exc, "download from", "failed")
        assert socket.getdefaulttimeout() == before
        assert leftovers(tmp_path) == []
    finally:
        silent.close()


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLEEN_COURSE_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as exc:
        load_model_or_bundle("pretrained")
    one_line(exc, "spleen-course pretrained")
    with pytest.raises(CheckpointError) as exc:
        choose_model("trained", run_dir=tmp_path / "none")
    one_line(exc, "no trained model", "notebook 03")


def test_a_course_checkpoint_still_loads(tiny_model: Path) -> None:
    model, cfg = load_model_or_bundle(tiny_model)
    saved = load_checkpoint(tiny_model)["model_state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert cfg.transform_order == "tutorial"


# --------------------------------------------------------------------------------- CLI
def test_cli_pretrained(server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["pretrained", "--dir", str(tmp_path), "--url", server.url("/bundle.zip"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"bundle: {tmp_path / BUNDLE_NAME}" in out and "md5" in out and "1.5 x 1.5 x 2 mm" in out
    assert main(args) == 0
    assert "already downloaded" in capsys.readouterr().out and len(server.requests) == 1
    assert main(["pretrained", "--dir", str(tmp_path / "x"), "--url", server.url("/wrong-md5.zip"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "0" * 32 in err
    assert leftovers(tmp_path / "x") == []


@pytest.mark.slow
def test_predict_with_the_bundle_uses_its_preprocessing(server: LocalServer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from tests.support import lps_case

    download_pretrained(tmp_path, url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    ct, hu, _ = lps_case(tmp_path)
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", "--model", str(tmp_path / BUNDLE_NAME), "--input", str(ct),
                 "--output", str(out), "--device", "cpu"]) == 0
    import nibabel as nib

    mask = np.asarray(nib.load(out).dataobj)
    assert mask.shape == hu.shape and set(np.unique(mask)) <= {0, 1}
    assert "spleen volume" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_05_segments_the_study_with_the_bundle(server: LocalServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebook 05 with the pretrained bundle present (here a loopback bundle of a random UNet):
    ``weights = "auto"`` takes it over the phantom model; the by-hand cells read its config,
    build the UNet and its preprocessing and prove them the package's; the domain-shift
    experiment prints a Dice computed for the phantom model and for the bundle; the notebook
    runs to its end (mask, SEG, viewers). Its own course home, so no other test sees the
    bundle. The plain nbmake run of the suite is the run without a bundle."""
    import re

    import nbformat

    from spleen_helpers.tools.course import run_course

    monkeypatch.setenv("SPLEEN_COURSE_HOME", str(tmp_path / "home"))
    bundle = download_pretrained(url=server.url("/bundle.zip"), progress=False, log=lambda _: None)
    assert bundle.path.is_relative_to(tmp_path / "home")
    out = tmp_path / "course"
    summary = run_course(out, notebooks=["05"], cell_timeout=300)
    assert summary.ok and summary.notebooks[0].status == "ok", summary.notebooks[0]
    text = "".join(o.get("text", "") for c in nbformat.read(out / "05_segment_a_study.ipynb", as_version=4).cells
                   for o in c.get("outputs", []))
    expected = bundle.config
    assert "source: pretrained" in text and "the pretrained bundle, trained on real CTs" in text
    assert f"pixdim {expected.pixdim} mm" in text and f"window {expected.roi_size}" in text
    assert "bundle.load() = UNet(**network_def) with models/model.pt" in text
    assert "this Compose = the package's bundle preprocessing" in text
    assert "predict_volume = the steps above" in text
    assert re.search(r"phantom-trained model +Dice \d\.\d{3} against the reference", text), text
    assert re.search(r"pretrained bundle +Dice \d\.\d{3} against the reference, [\d.]+ mL, layout ", text), text
    assert f"weights : pretrained ({bundle.path}" in text
