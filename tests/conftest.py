"""Shared fixtures: the real data beside the checkout, and small synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPLEEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real scanner DICOM and CT); skip when this checkout has none, fail under CI=true."""
    from tests.support import skip_or_fail

    if not SHARED_DATA.is_dir():
        skip_or_fail(f"real test data not found at {SHARED_DATA} (only developers' and CI's "
                     "checkouts have ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data set (6 cases, default grid), written once per test session."""
    from spleen_helpers.data.phantom import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_cases=6, seed=0)


def pytest_configure(config: pytest.Config) -> None:
    """Keep test runs away from a student's own data and runs, and keep notebooks short.

    Notebooks executed by nbmake inherit this environment: they write under a throw-away
    course home (not the checkout's ``runs/``, where ``make course`` keeps its model),
    run in their quick mode unless the caller set ``SPLEEN_QUICK`` explicitly, and never
    download the pretrained bundle (``SPLEEN_DOWNLOAD_PRETRAINED=0``, whatever the caller
    set: a test run must not depend on the network or fetch 20 MB).
    """
    if "SPLEEN_COURSE_HOME" not in os.environ:
        import tempfile

        home = tempfile.mkdtemp(prefix="spleen-course-tests-")
        os.environ["SPLEEN_COURSE_HOME"] = config._spleen_test_home = home  # type: ignore[attr-defined]
    os.environ.setdefault("SPLEEN_QUICK", "1")
    os.environ["SPLEEN_DOWNLOAD_PRETRAINED"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    home = getattr(config, "_spleen_test_home", None)
    if home:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        os.environ.pop("SPLEEN_COURSE_HOME", None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny UNet saved the way training saves its best model (2 validation cases)."""
    from tests.support import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("model"), val_count=2)


@pytest.fixture(scope="module")
def case():
    """One phantom case ``(image HU, label, affine)`` on the DICOM tests' grid."""
    from spleen_helpers.data.phantom import generate_case
    from tests.support import DICOM_SPEC

    return generate_case(3, DICOM_SPEC)


@pytest.fixture
def synth_dir(tmp_path: Path, case) -> Path:
    """That case written as one DICOM CT series (``tmp_path/dicom``)."""
    from spleen_helpers.data.phantom_dicom import write_ct_series

    image, _, affine = case
    out = tmp_path / "dicom"
    write_ct_series(image, affine, out, patient_id="P1", series_description="Synthetic CT")
    return out


#: Test modules that are slow as a whole: JupyterLab in a browser, process groups, benchmarks.
SLOW_MODULES = {"test_browser.py", "test_launch.py", "test_benchmarks.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The quick lane (``make test-fast``, ``-m "not slow"``) leaves out every notebook run and the
    slow modules; other slow tests carry ``@pytest.mark.slow`` themselves."""
    for item in items:
        if item.path.suffix == ".ipynb" or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
