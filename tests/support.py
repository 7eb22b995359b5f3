"""Helpers shared by the tests of prediction, evaluation, training and the viewers (not a test module)."""

from __future__ import annotations

import http.server
import os
import shlex
import threading
from pathlib import Path
from typing import Any, NoReturn

import nibabel as nib
import numpy as np
import pytest
import torch

from spleen_helpers.engine.checkpoint import save_checkpoint
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.paths import RunLayout
from spleen_helpers.engine.model import build_unet
from spleen_helpers.data.phantom import PhantomSpec

TINY = dict(channels=(4, 8, 16), strides=(2, 2), max_epochs=1, val_interval=1)


def tiny_cfg(**kw) -> CourseConfig:
    return CourseConfig.synthetic(**(TINY | kw))


class ThresholdNet(torch.nn.Module):
    """A stand-in "network": spleen where the scaled intensity exceeds ``level``.

    Its output depends only on the voxel's own value, so the true answer in the original
    space is known exactly: a flipped, shifted or resampled-wrong prediction cannot pass.
    """

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x - self.level) * 50.0
        return torch.cat([-s, s], dim=1)


def level_for(hu: float, cfg: CourseConfig) -> float:
    return (hu - cfg.a_min) / (cfg.a_max - cfg.a_min)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, path)
    return path


def viewer_volumes(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A volume in which every slice along every axis differs, a label and a shifted prediction
    (for the tests of the viewers, shape (40, 30, 16))."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    image = (x * 3.0 + y * 2.0 + z * 5.0 + rng.normal(0, 1, shape)).astype(np.float32)
    label = (((x - 20) / 8.0) ** 2 + ((y - 12) / 6.0) ** 2 + ((z - 9) / 4.0) ** 2 < 1).astype(np.uint8)
    return image, label, np.roll(label, 2, axis=0)


def lps_case(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An asymmetric volume on an LPS, anisotropic grid: a body box with a bright inner box
    near one corner and a small bright blob elsewhere (two components)."""
    hu = np.full((96, 80, 24), -1000, np.int16)
    hu[6:60, 30:76, 2:22] = 0            # "body" (foreground), off-centre
    hu[10:40, 50:72, 4:16] = 200         # large bright box near one corner
    hu[50:55, 34:39, 18:21] = 200        # small bright blob: a second component
    affine = np.diag([-2.5, -2.5, 6.0, 1.0])
    affine[:3, 3] = [120.0, 100.0, -70.0]
    return save_nifti(hu, affine, tmp_path / "lps_ct.nii.gz"), hu, affine


def save_tiny_model(folder: Path, **cfg_changes) -> Path:
    """An untrained tiny UNet saved the way training saves its best model."""
    cfg = tiny_cfg(**cfg_changes)
    torch.manual_seed(0)
    path = RunLayout(folder).best_model
    save_checkpoint({"model_state_dict": build_unet(cfg).state_dict(), "config": cfg.to_dict(),
                     "epoch": 1, "best_metric": 0.0}, path)
    return path


def running_in_ci() -> bool:
    """True under ``CI=true`` (GitHub Actions, GitLab CI and most others set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose material (``../shared`` data, Chromium) this checkout lacks.

    A user's clone skips; under ``CI=true``, where the material must be present, the test
    fails with the reason instead, so a missing data folder or browser cannot hide a failure.
    """
    if running_in_ci():
        pytest.fail(f"{reason} [CI=true: this test must run in CI, so it fails instead of skipping]",
                    pytrace=False)
    pytest.skip(reason)


class CodeRunningPayload:
    """Unpickling this runs ``touch MARKER`` (the classic malicious checkpoint).

    ``marker`` must be an absolute path, so that a test can check the one place it would appear.
    """

    def __init__(self, marker: Path) -> None:
        assert Path(marker).is_absolute(), marker
        self.marker = Path(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``routes`` (path -> bytes); records the paths asked for.

    Start it with ``.thread.start()``; stop it with ``.httpd.shutdown()`` and ``.httpd.server_close()``.
    """

    def __init__(self, routes: dict[str, bytes]):
        self.routes = routes
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


def without_proxies(monkeypatch) -> None:
    """Requests to 127.0.0.1 must not go through a proxy from the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


#: The phantom grid of the DICOM tests: x, y and z differ in size and spacing so that any
#: swapped axis shows.
DICOM_SPEC = PhantomSpec(shape=(40, 32, 10), spacing=(3.0, 2.5, 5.0))


def one_line_naming(err: Any, path: Path) -> str:
    """The message of ``pytest.raises``' error: one line that names ``path``."""
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg
