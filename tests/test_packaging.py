"""The install paths agree: pyproject.toml, environment.yml and the Makefile's torch pin."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    by_name = {canonicalize_name(r.name): r for r in reqs}
    assert len(by_name) == len(reqs), f"a package is listed twice: {lines}"
    return by_name


def pyproject_requirements() -> dict[str, Requirement]:
    project = pyproject()["project"]
    return requirements(project["dependencies"] + project["optional-dependencies"]["test"])


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pip() -> list[str]:
    pips = [d["pip"] for d in environment()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, "environment.yml needs exactly one pip section"
    return pips[0]


def makefile_torch_spec() -> Requirement:
    match = re.search(r"^TORCH_SPEC\s*\??=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile defines no TORCH_SPEC"
    return Requirement(match.group(1))


def test_environment_is_the_course_env_on_python_311() -> None:
    env = environment()
    assert env["name"] == "spleen-course"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda


def test_environment_pip_section_matches_pyproject() -> None:
    lines = environment_pip()
    local = [line for line in lines if line.startswith("-e")]
    assert local == ["-e ."], "environment.yml should install the course package itself (-e .)"
    env = requirements([line for line in lines if not line.startswith("-")])
    project = pyproject_requirements()
    env_torch, project_torch = env.pop("torch"), project.pop("torch")
    assert sorted(env) == sorted(project), (
        f"only in environment.yml: {sorted(set(env) - set(project))}; "
        f"only in pyproject.toml: {sorted(set(project) - set(env))}")
    differ = {name: (str(env[name].specifier), str(project[name].specifier))
              for name in env if env[name].specifier != project[name].specifier}
    assert not differ, f"version specifiers differ (environment.yml, pyproject.toml): {differ}"
    # torch: the exact pin (environment.yml, Makefile) must satisfy pyproject's range
    pinned = makefile_torch_spec()
    assert str(env_torch) == str(pinned), f"environment.yml has {env_torch}, the Makefile {pinned}"
    version = next(iter(pinned.specifier)).version
    assert project_torch.specifier.contains(version), (
        f"the Makefile's {pinned} is outside pyproject.toml's {project_torch}")


def test_torch_is_pinned_exactly_and_installed_first() -> None:
    pinned = makefile_torch_spec()
    assert canonicalize_name(pinned.name) == "torch"
    specs = list(pinned.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"TORCH_SPEC must pin one version: {pinned}"
    assert Requirement(environment_pip()[0]).name == "torch", "torch must come first in the pip list"
    make = (ROOT / "Makefile").read_text()
    assert make.index('"$(TORCH_SPEC)"') < make.index('-e ".[test]"'), "the Makefile installs torch after the package"


def test_console_script_is_declared_and_installed() -> None:
    """pyproject names the CLI's entry point, and the installed metadata leads to that function."""
    from importlib.metadata import entry_points

    from spleen_helpers.tools.cli import main

    project = pyproject()["project"]
    assert project["scripts"]["spleen-course"] == "spleen_helpers.tools.cli:main"
    installed = entry_points(group="console_scripts", name="spleen-course")
    assert [ep.value for ep in installed] == ["spleen_helpers.tools.cli:main"], (
        "the installed entry point differs from pyproject.toml: run `make setup` again")
    assert next(iter(installed)).load() is main


def test_package_version_matches_pyproject() -> None:
    import spleen_helpers

    assert spleen_helpers.__version__ == pyproject()["project"]["version"]


# ----------------------------------------------------------------- make browser-deps
MAKE = shutil.which("make")


def run_browser_deps(tmp_path: Path, uid: int, apt_get: str | None, chromium_env: str = "") -> str:
    """``make browser-deps`` with a PATH holding only the tools it needs: no Chromium, a fake
    ``id`` reporting ``uid`` and, unless None, a fake ``apt-get`` with the given shell body."""
    bin_dir = Path(tempfile.mkdtemp(prefix="bin-", dir=tmp_path))
    for tool in ("mktemp", "tail", "sed", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fakes = {"id": f"echo {uid}"} | ({"apt-get": apt_get} if apt_get is not None else {})
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "SPLEEN_CHROMIUM": chromium_env}
    done = subprocess.run([MAKE, "-s", "-C", str(ROOT), "browser-deps"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr        # a missing browser never stops `make test`
    return done.stdout + done.stderr


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_browser_deps_says_why_chromium_is_missing(tmp_path: Path) -> None:
    failing_apt = ('[ "$1" = update ] && exit 0\n'
                   'echo "E: Unable to locate package chromium" >&2\nexit 100')
    out = run_browser_deps(tmp_path, 0, failing_apt)
    assert "could not be installed with apt-get (exit status 100)" in out
    assert "E: Unable to locate package chromium" in out and "fail under CI=true" in out
    assert "needs root (this is uid 1000)" in run_browser_deps(tmp_path, 1000, None)
    assert "apt-get is not available" in run_browser_deps(tmp_path, 0, None)
    fake_chromium = tmp_path / "chromium"
    fake_chromium.write_text("#!/bin/sh\n")
    fake_chromium.chmod(0o755)
    assert run_browser_deps(tmp_path, 0, "exit 1", str(fake_chromium)) == ""   # found: nothing to do
