"""Pretrained spleen weights: MONAI's model-zoo bundle ``spleen_ct_segmentation``.

Training the real model takes 600 epochs on a GPU. MONAI's model zoo publishes the result as
a *bundle*: a folder with ``configs/metadata.json`` (name, version, changelog),
``configs/inference.json`` (the network definition, the preprocessing, the sliding-window
inferer, as MONAI config components), ``models/model.pt`` (the weights, a plain state dict)
and ``large_files.yml`` (where each large file comes from and its md5). This module

* downloads the bundle with MONAI's own :func:`monai.bundle.download` (its default route,
  the model zoo's hosting; or ``url=`` a zip archive, e.g. a mirror or a test server) into a
  temporary folder beside the target, fetches ``models/model.pt`` from ``large_files.yml``
  with MONAI's ``download_url`` when the archive lacks it, checks the weights' md5 against
  ``large_files.yml`` with MONAI's ``check_hash`` (``monai.bundle.download(url=...)`` checks
  no hash itself), checks the network and the preprocessing, loads the weights into the
  course's UNet, and only then renames the folder into place: a failed or corrupt download
  leaves nothing behind, and a second call does nothing;
* reads ``configs/inference.json`` with MONAI's ``ConfigParser``, resolving references but
  never evaluating an expression or instantiating a component (a downloaded config is
  data, not code), and refuses in one line a bundle whose ``network_def`` is not the
  course's UNet (3-D, 1 → 2 channels, channels 16–256, strides 2 × 4, two residual units,
  batch norm) or whose preprocessing the course cannot reproduce;
* turns the bundle's inference settings (orientation, voxel size, HU window, sliding
  window, overlap) into a :class:`~spleen_helpers.ground.settings.CourseConfig` with
  ``transform_order="bundle"``, so :func:`spleen_helpers.engine.predict.predict_volume` runs the
  bundle's own preprocessing, read from its config, not retyped;
* is where :func:`spleen_helpers.engine.weights.choose_model` finds the bundle when it picks the
  weights a notebook uses (a model trained on real data first, then the bundle, then a
  phantom-trained model).

The current bundle's ``large_files.yml`` gives ``models/model.pt`` the md5
``be4fa95e236df91766147c112ee6fafd`` (bundle versions 0.5.9 and later); the check always
uses the downloaded bundle's own file.

Example:
    >>> bundle = download_pretrained()                       # doctest: +SKIP
    >>> model, cfg = bundle.load("cpu")                      # doctest: +SKIP
    >>> cfg.pixdim, cfg.roi_size, cfg.overlap                # doctest: +SKIP
    ((1.5, 1.5, 2.0), (96, 96, 96), 0.5)
"""

from __future__ import annotations

import os
import socket
import urllib.error
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..ground.errors import (
    CheckpointError,
    ConfigError,
    CourseError,
    DataError,
    quiet_logger,
)
from ..ground.files import earlier_download, file_md5, staged_download
from ..ground.paths import course_home
from ..ground.settings import CourseConfig
from .checkpoint import load_checkpoint, load_model
from .model import build_unet

__all__ = [
    "BUNDLE_NAME", "default_bundle_root", "bundle_config", "PretrainedBundle", "open_bundle",
    "find_pretrained", "download_pretrained"
]


BUNDLE_NAME = "spleen_ct_segmentation"


WEIGHTS_FILE = "models/model.pt"


INFERENCE_CONFIG = "configs/inference.json"


METADATA_FILE = "configs/metadata.json"


LARGE_FILES = ("large_files.yml", "large_files.yaml", "large_files.json", "large_file.yml")


# The course's UNet as MONAI's UNet arguments; a bundle's network_def must say exactly this.
_UNET_TARGETS = {"UNet", "monai.networks.nets.UNet", "monai.networks.nets.unet.UNet"}


_NORMS = {"batch": "batch", "batchnorm": "batch", "instance": "instance", "instancenorm": "instance"}


# The bundle's preprocessing, step by step, as transform_order="bundle" reproduces it.
_BUNDLE_STEPS = ("LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd",
                 "ScaleIntensityRanged", "EnsureTyped")


def default_bundle_root() -> Path:
    """Where ``spleen-course pretrained`` puts bundles: ``<course home>/pretrained``.

    >>> default_bundle_root().name
    'pretrained'
    """
    return course_home() / "pretrained"


# ------------------------------------------------------------------------ reading a bundle
def _target(component: dict[str, Any]) -> str:
    return str(component.get("_target_", "")).split("#")[0]


def _plain(value: Any, where: str, path: Path) -> Any:
    """A resolved config value that is data, not an unevaluated ``$`` expression."""
    if isinstance(value, str) and value.startswith("$"):
        raise CheckpointError(path, f"{where} is an expression ({value[:60]!r}); the course reads "
                                    "only plain values from a downloaded config and runs none of its code")
    return value


def _read_inference_config(bundle: Path) -> Any:
    from monai.bundle import ConfigParser

    path = bundle / INFERENCE_CONFIG
    if not path.is_file():
        raise CheckpointError(bundle, f"is not a MONAI bundle: {INFERENCE_CONFIG} is missing")
    parser = ConfigParser()
    try:
        parser.read_config(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    return parser


def _as_config(item: Any) -> Any:
    """MONAI's resolved config items back to plain dicts and lists."""
    if hasattr(item, "get_config"):
        item = item.get_config()
    if isinstance(item, dict):
        return {k: _as_config(v) for k, v in item.items()}
    if isinstance(item, list):
        return [_as_config(v) for v in item]
    return item


def _component(parser: Any, key: str, path: Path) -> Any:
    """The config at ``key`` with references resolved; nothing evaluated or instantiated."""
    try:
        item = parser.get_parsed_content(key, instantiate=False, eval_expr=False)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(path, f"has no usable {key!r} ({type(exc).__name__}: {exc})") from None
    return _as_config(item)


def _resolved(value: Any, parser: Any, path: Path, where: str) -> Any:
    """Resolve ``@reference`` strings left inside a component's config (one level)."""
    if isinstance(value, str) and value.startswith("@"):
        return _plain(_component(parser, value[1:], path), where, path)
    return _plain(value, where, path)


def _check_network(net: Any, path: Path) -> dict[str, Any]:
    """The UNet arguments of ``network_def``, or CheckpointError naming what differs from the course's."""
    if not isinstance(net, dict) or _target(net) not in _UNET_TARGETS:
        target = _target(net) if isinstance(net, dict) else type(net).__name__
        raise CheckpointError(path, f"network_def is {target or 'not a component'}, not MONAI's UNet: "
                                    "the course's UNet cannot load these weights")
    args = {k: v for k, v in net.items() if not k.startswith("_")}
    norm = args.get("norm", "instance")
    norm = norm[0] if isinstance(norm, (list, tuple)) and norm else norm
    expected = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2,
                "norm": "batch"}
    found = {"spatial_dims": args.get("spatial_dims", args.get("dimensions")),
             "in_channels": args.get("in_channels"), "out_channels": args.get("out_channels"),
             "channels": list(args.get("channels", [])), "strides": list(args.get("strides", [])),
             "num_res_units": args.get("num_res_units", 0),
             "norm": _NORMS.get(str(norm).lower(), str(norm).lower())}
    diffs = [f"{k} {found[k]} (the course's UNet: {v})" for k, v in expected.items() if found[k] != v]
    extra = sorted(set(args) - set(expected) - {"dimensions"})
    if extra:
        diffs.append(f"other settings {extra}")
    if diffs:
        raise CheckpointError(path, "network_def is not the course's UNet: " + "; ".join(diffs))
    return found


def bundle_config(bundle_dir: str | os.PathLike) -> CourseConfig:
    """The course settings that reproduce a spleen bundle's inference, read from its
    ``configs/inference.json``.

    Checks ``network_def`` (the course's UNet) and the preprocessing (the steps of
    ``transform_order="bundle"``, in that order); takes the orientation, voxel size,
    interpolation, HU window and the sliding window's size, batch, overlap and blending from
    it. Raises CheckpointError naming the file and what differs.
    """
    bundle = Path(bundle_dir)
    parser = _read_inference_config(bundle)
    path = bundle / INFERENCE_CONFIG
    net = _check_network(_component(parser, "network_def", path), path)

    steps = _component(parser, "preprocessing#transforms", path)
    if not isinstance(steps, list):
        raise CheckpointError(path, "preprocessing#transforms is not a list of transforms")
    names = tuple(_target(s) if isinstance(s, dict) else "?" for s in steps)
    if names != _BUNDLE_STEPS:
        raise CheckpointError(path, f"preprocessing is {' -> '.join(names)}; the course reproduces "
                                    f"only {' -> '.join(_BUNDLE_STEPS)}")
    by_name = dict(zip(names, steps))

    def arg(step: str, key: str, default: Any = None) -> Any:
        return _resolved(by_name[step].get(key, default), parser, path, f"{step} {key}")

    if str(arg("Spacingd", "mode", "bilinear")).lower() != "bilinear":
        raise CheckpointError(path, f"Spacingd mode is {arg('Spacingd', 'mode')!r}; the course "
                                    "resamples images bilinearly")
    inferer = _component(parser, "inferer", path)
    if not isinstance(inferer, dict) or _target(inferer) != "SlidingWindowInferer":
        raise CheckpointError(path, "inferer is not a SlidingWindowInferer")

    def sw(key: str, default: Any) -> Any:
        return _resolved(inferer.get(key, default), parser, path, f"inferer {key}")

    try:
        return CourseConfig(
            orientation=str(arg("Orientationd", "axcodes")),
            pixdim=tuple(float(v) for v in arg("Spacingd", "pixdim")),
            a_min=float(arg("ScaleIntensityRanged", "a_min")),
            a_max=float(arg("ScaleIntensityRanged", "a_max")),
            b_min=float(arg("ScaleIntensityRanged", "b_min", 0.0)),
            b_max=float(arg("ScaleIntensityRanged", "b_max", 1.0)),
            clip=bool(arg("ScaleIntensityRanged", "clip", False)),
            transform_order="bundle",
            channels=tuple(net["channels"]), strides=tuple(net["strides"]),
            num_res_units=int(net["num_res_units"]), norm=net["norm"],
            roi_size=tuple(int(v) for v in sw("roi_size", None)),
            sw_batch_size=int(sw("sw_batch_size", 1)),
            overlap=float(sw("overlap", 0.25)),
            blend_mode=str(sw("mode", "constant")),
            patch_size=tuple(int(v) for v in sw("roi_size", None)),
            keep_largest_component=False,
            profile="bundle",
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"holds settings the course cannot use ({exc})") from None
    except ConfigError as exc:
        raise CheckpointError(path, f"holds settings the course cannot use ({exc.problem})") from None


def _large_file_entry(bundle: Path) -> tuple[Path, dict[str, Any]]:
    """``large_files.yml`` and its entry for ``models/model.pt``."""
    from monai.bundle import ConfigParser

    listed = next((bundle / n for n in LARGE_FILES if (bundle / n).is_file()), None)
    if listed is None:
        raise CheckpointError(bundle, f"has no large_files.yml: the md5 of {WEIGHTS_FILE} cannot be checked")
    try:
        entries = ConfigParser.load_config_file(listed).get("large_files", [])
    except Exception as exc:  # yaml/json errors of several kinds
        raise CheckpointError(listed, f"cannot be read ({type(exc).__name__}: {exc})") from None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("path", "")).lstrip("./") == WEIGHTS_FILE:
            if not entry.get("hash_val"):
                raise CheckpointError(listed, f"states no hash_val for {WEIGHTS_FILE}")
            return listed, entry
    raise CheckpointError(listed, f"does not list {WEIGHTS_FILE}")


@dataclass(frozen=True)
class PretrainedBundle:
    """A downloaded, checked spleen bundle: where it is, its version, its verified weights and
    the course settings that reproduce its inference."""

    path: Path
    version: str
    weights: Path
    weights_md5: str
    config: CourseConfig

    def load(self, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CourseConfig]:
        """The course's UNet with the bundle's weights (loaded safely), in eval mode, and its settings."""
        return load_model(self.weights, self.config, device)

    def describe(self) -> str:
        """One line: name, version, where, and the preprocessing it implies."""
        c = self.config
        return (f"{BUNDLE_NAME} {self.version} in {self.path} (weights md5 {self.weights_md5} checked): "
                f"{c.orientation}, {c.pixdim[0]:g} x {c.pixdim[1]:g} x {c.pixdim[2]:g} mm, "
                f"HU {c.a_min:g}..{c.a_max:g}, window {c.roi_size[0]}^3, overlap {c.overlap:g}")


def open_bundle(bundle_dir: str | os.PathLike) -> PretrainedBundle:
    """Check a bundle folder (weights' md5 from ``large_files.yml``, network, preprocessing,
    weights fit the UNet) and describe it; CheckpointError naming what is wrong.
    """
    from monai.apps.utils import check_hash
    from monai.bundle import ConfigParser

    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise CheckpointError(bundle, "is not a bundle folder")
    cfg = bundle_config(bundle)
    listed, entry = _large_file_entry(bundle)
    weights = bundle / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(bundle, f"{WEIGHTS_FILE} is missing")
    expected, kind = str(entry["hash_val"]).lower(), str(entry.get("hash_type", "md5")).lower()
    with quiet_logger("monai.apps"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = check_hash(weights, expected, kind)
    if not ok:
        actual = file_md5(weights) if kind == "md5" else "another value"
        raise CheckpointError(weights, f"{kind} {actual} does not match {expected}, the value "
                                       f"{listed.name} states (corrupt or incomplete download)")
    state = load_checkpoint(weights)  # safe: tensors and plain data only
    try:
        build_unet(cfg).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(weights, f"does not fit the UNet of network_def ({first[:160]})") from None
    version = "unknown"
    if (bundle / METADATA_FILE).is_file():
        try:
            version = str(ConfigParser.load_config_file(bundle / METADATA_FILE).get("version", "unknown"))
        except Exception:  # metadata is informative only
            pass
    return PretrainedBundle(path=bundle, version=version, weights=weights, weights_md5=expected,
                            config=cfg)


def find_pretrained(root: str | os.PathLike | None = None) -> PretrainedBundle | None:
    """The checked bundle in ``root`` (default :func:`default_bundle_root`), or None when none
    was downloaded; a damaged one raises CheckpointError.
    """
    bundle = Path(root or default_bundle_root()) / BUNDLE_NAME
    return open_bundle(bundle) if bundle.exists() else None


# ------------------------------------------------------------------------------ download
def _fetch_weights(bundle: Path, progress: bool) -> None:
    """Download ``models/model.pt`` as ``large_files.yml`` lists it (MONAI's download_url,
    hash checked), when the archive came without it. Only the PyTorch weights are fetched:
    the course needs no TorchScript copy, which MONAI's ``download_large_files`` would add."""
    from monai.apps.utils import download_url

    _, entry = _large_file_entry(bundle)
    if not entry.get("url"):
        raise CheckpointError(bundle, f"{WEIGHTS_FILE} is missing and large_files.yml gives no url")
    target = bundle / WEIGHTS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        download_url(url=str(entry["url"]), filepath=target, hash_val=None, progress=progress)


def _download_bundle(staging: Path, target: Path, where: str, url: str | None, version: str | None,
                     progress: bool) -> None:
    """MONAI's ``monai.bundle.download`` into ``staging`` (and the weights, when the archive lacks
    them), MONAI's logs quietened; any failure is a one-line DataError naming ``target``."""
    from monai.bundle import download

    # MONAI logs each step and failure in several lines; the course reports in one.
    with quiet_logger("monai.apps"), quiet_logger("monai.bundle.scripts"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if url is not None:
                download(name=BUNDLE_NAME, bundle_dir=staging, url=url, progress=progress)
            else:
                download(name=BUNDLE_NAME, version=version, bundle_dir=staging, progress=progress)
            fetched = staging / BUNDLE_NAME
            if fetched.is_dir() and not (fetched / WEIGHTS_FILE).is_file():
                _fetch_weights(fetched, progress)
        except urllib.error.HTTPError as exc:
            raise DataError(target, f"download from {exc.url or where} failed: the server answered "
                                    f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.ContentTooShortError:
            raise DataError(target, f"download from {where} was cut short; run it again") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(target, f"download from {where} failed: network unreachable "
                                    f"({str(reason).splitlines()[0][:160]})") from None
        except CourseError:
            raise
        except Exception as exc:  # zip errors, a missing optional package, HTTP client errors
            text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise DataError(target, f"download from {where} failed ({type(exc).__name__}: "
                                    f"{text})") from None


def download_pretrained(root: str | os.PathLike | None = None, *, url: str | None = None,
                        version: str | None = None, progress: bool = True, timeout: float | None = None,
                        log: Callable[[str], None] = print) -> PretrainedBundle:
    """Download and check MONAI's ``spleen_ct_segmentation`` bundle into ``root/spleen_ct_segmentation``.

    ``root`` defaults to :func:`default_bundle_root`. Without ``url`` MONAI's default route
    is used (the model zoo's hosting, latest version unless ``version`` is given); with
    ``url`` the zip archive there (holding a ``spleen_ct_segmentation/`` folder). Nothing
    is downloaded when a checked bundle is already in place. A failed download, a wrong
    md5 or a bundle the course cannot use raises a one-line CourseError and leaves no
    bundle folder and no temporary files behind. ``timeout`` (seconds) bounds every connect
    and every read of the download, so that a machine without network says so quickly
    instead of waiting for the system's own timeout (None: the system's).
    """
    root_dir = Path(root or default_bundle_root()).expanduser()
    target = root_dir / BUNDLE_NAME
    found = earlier_download(target, open_bundle, CheckpointError,
                             "exists but is not a usable bundle ({exc.problem}); delete it and download again")
    if found is not None:
        log(f"already downloaded: {found.describe()}")
        return found
    if root_dir.exists() and not root_dir.is_dir():
        raise DataError(root_dir, "is not a folder")
    with staged_download(root_dir, BUNDLE_NAME) as staging:
        where = url or f"MONAI's model zoo ({BUNDLE_NAME} {version or 'latest'})"
        # MONAI's downloads (urllib, requests) open their sockets with the process's default timeout.
        previous_timeout = socket.getdefaulttimeout()
        if timeout is not None:
            socket.setdefaulttimeout(float(timeout))
        try:
            log(f"downloading {where} to {root_dir}")
            _download_bundle(staging, target, where, url, version, progress)
            fetched = staging / BUNDLE_NAME
            if not fetched.is_dir():
                raise DataError(target, f"the archive from {where} holds no {BUNDLE_NAME}/ folder")
            bundle = open_bundle(fetched)
            try:
                os.replace(fetched, target)  # atomic: the bundle appears checked and complete, or not at all
            except OSError as exc:
                raise DataError(target, f"cannot move the bundle into place ({exc.strerror or exc})") from None
        finally:
            socket.setdefaulttimeout(previous_timeout)
    bundle = PretrainedBundle(path=target, version=bundle.version, weights=target / WEIGHTS_FILE,
                              weights_md5=bundle.weights_md5, config=bundle.config)
    log(f"ready: {bundle.describe()}")
    return bundle
