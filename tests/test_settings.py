"""CourseConfig: defaults, validation, round trip; the course's paths and environment defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spleen_helpers.ground.paths import PACKAGE_DIR, course_home, default_data_dir, default_runs_dir, env_default
from spleen_helpers.ground.settings import CourseConfig, config_for, is_synthetic_dataset
from spleen_helpers.ground.errors import ConfigError


def test_defaults_are_the_monai_tutorial_settings() -> None:
    cfg = CourseConfig()
    assert cfg.pixdim == (1.5, 1.5, 2.0)
    assert cfg.patch_size == (96, 96, 96) and cfg.roi_size == (160, 160, 160)
    assert (cfg.a_min, cfg.a_max, cfg.b_min, cfg.b_max) == (-57.0, 164.0, 0.0, 1.0)
    assert cfg.max_epochs == 600 and cfg.val_interval == 2 and cfg.learning_rate == 1e-4
    assert cfg.channels == (16, 32, 64, 128, 256) and cfg.strides == (2, 2, 2, 2)
    assert cfg.profile == "msd"


def test_synthetic_settings_are_small_and_accept_overrides() -> None:
    cfg = CourseConfig.synthetic(max_epochs=4)
    assert cfg.profile == "synthetic" and cfg.max_epochs == 4
    assert all(p < r for p, r in zip(cfg.patch_size, CourseConfig().patch_size))
    assert all(s < r for s, r in zip(cfg.roi_size, CourseConfig().roi_size))


@pytest.mark.parametrize("changes, words", [
    ({"max_epochs": -1}, "max_epochs must be >= 0"),
    ({"val_interval": 0}, "val_interval"),
    ({"batch_size": 0}, "batch_size"),
    ({"cache_rate": 1.5}, "cache_rate"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"a_min": 200.0}, "a_max (164.0) must be greater than a_min (200.0)"),
    ({"pixdim": (1.5, 0.0, 2.0)}, "pixdim"),
    ({"channels": (16, 32)}, "one longer than strides"),
    ({"patch_size": (96, 96, 90)}, "patch_size (96, 96, 90) must be divisible by 16"),
    ({"roi_size": (160, 160, 100)}, "roi_size (160, 160, 100) must be divisible by 16"),
    ({"roi_size": (160, 160, 528)}, "larger than allowed"),
    ({"patch_size": (96, 96)}, "three positive integers"),
    ({"overlap": 1.0}, "overlap"),
    ({"loader": "fast"}, "loader"),
    ({"blend_mode": "mean"}, "blend_mode"),
    ({"transform_order": "reverse"}, "transform_order must be one of 'tutorial', 'bundle'"),
    ({"device": "gpu"}, "device"),
])
def test_invalid_values_are_config_errors(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        CourseConfig().replace(**changes)
    assert words in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        CourseConfig(**changes)  # the constructor validates too


def test_divisibility_follows_the_strides() -> None:
    cfg = CourseConfig(strides=(2, 2), channels=(8, 16, 32), patch_size=(20, 20, 20),
                       roi_size=(40, 40, 40))
    assert cfg.patch_size == (20, 20, 20)  # 20 is divisible by 4, the product of these strides
    with pytest.raises(ConfigError, match="divisible by 4"):
        cfg.replace(patch_size=(22, 20, 20))


@pytest.mark.parametrize("make", [lambda: CourseConfig().replace(max_epoch=3),
                                  lambda: CourseConfig.from_dict({"max_epoch": 3})])
def test_unknown_settings_are_named(make) -> None:
    with pytest.raises(ConfigError, match="max_epoch"):
        make()


def test_replace_returns_a_validated_copy() -> None:
    cfg = CourseConfig()
    new = cfg.replace(max_epochs=3, roi_size=[96, 96, 96])
    assert new.max_epochs == 3 and new.roi_size == (96, 96, 96) and cfg.max_epochs == 600
    with pytest.raises(AttributeError):
        cfg.max_epochs = 1  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("cfg", [CourseConfig(), CourseConfig.synthetic(augment=True, val_fraction=0.2)])
def test_to_dict_from_dict_round_trip_through_json(cfg: CourseConfig) -> None:
    values = json.loads(json.dumps(cfg.to_dict()))
    assert isinstance(values["pixdim"], list)
    back = CourseConfig.from_dict(values)
    assert back == cfg and back.profile == cfg.profile and back.to_dict() == cfg.to_dict()


def test_model_signature_holds_only_the_network_shape() -> None:
    a, b = CourseConfig(), CourseConfig(learning_rate=1e-3, max_epochs=3)
    assert a.model_signature() == b.model_signature()
    assert CourseConfig(num_res_units=1).model_signature() != a.model_signature()


def test_config_for_picks_synthetic_or_real(tmp_path: Path) -> None:
    from spleen_helpers.data.phantom import PhantomSpec, write_synthetic_dataset

    synthetic_dir = write_synthetic_dataset(tmp_path / "synthetic", num_cases=1,
                                            spec=PhantomSpec(shape=(16, 16, 8)))
    assert config_for(None).profile == "synthetic" and config_for("").profile == "synthetic"
    assert is_synthetic_dataset(synthetic_dir)
    assert config_for(synthetic_dir).profile == "synthetic"
    real = tmp_path / "Task09_Spleen"
    real.mkdir()
    (real / "dataset.json").write_text(json.dumps({"name": "Spleen", "numTraining": 41}))
    assert not is_synthetic_dataset(real)
    assert config_for(real) == CourseConfig() and config_for(real).profile == "msd"
    assert config_for(real, max_epochs=5).max_epochs == 5
    (real / "dataset.json").write_text("{not json")
    assert not is_synthetic_dataset(real) and config_for(real).profile == "msd"


@pytest.mark.parametrize("raw, default, expected", [
    ("7", 3, 7), ("0.25", 1.0, 0.25), ("runs/x", "", "runs/x"),
    ("1", False, True), ("yes", False, True), ("TRUE", False, True), ("0", True, False),
    ("off", True, False), ("", 3, 3),
])
def test_env_default_converts_to_the_default_type(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                 default: object, expected: object) -> None:
    monkeypatch.setenv("SPLEEN_TEST_VALUE", raw)
    value = env_default("SPLEEN_TEST_VALUE", default)
    assert value == expected and type(value) is type(expected)


def test_env_default_unset_and_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPLEEN_TEST_VALUE", raising=False)
    assert env_default("SPLEEN_TEST_VALUE", 3) == 3
    monkeypatch.setenv("SPLEEN_TEST_VALUE", "three")
    with pytest.raises(ConfigError, match="SPLEEN_TEST_VALUE='three' is not a valid int"):
        env_default("SPLEEN_TEST_VALUE", 3)


def test_course_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPLEEN_COURSE_HOME", str(tmp_path / "home"))
    assert course_home() == (tmp_path / "home").resolve()
    assert default_data_dir() == course_home() / "data" / "synthetic"
    assert default_runs_dir() == course_home() / "runs"
    monkeypatch.delenv("SPLEEN_COURSE_HOME")
    assert course_home() == PACKAGE_DIR.parent  # tests run from the checkout
    monkeypatch.setenv("SPLEEN_COURSE_HOME", "")
    assert course_home() == PACKAGE_DIR.parent  # empty means unset


def test_course_home_outside_a_checkout_is_in_the_home_folder(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    import spleen_helpers.ground.paths as config

    monkeypatch.delenv("SPLEEN_COURSE_HOME", raising=False)
    monkeypatch.setattr(config, "PACKAGE_DIR", tmp_path / "site-packages" / "spleen_helpers")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert config.course_home() == tmp_path / "user" / "spleen-course"
