"""The `keras.applications` backbones `model=pretrained` can name, and what is checked about them before
TensorFlow loads: the name (with close names), the smallest image each takes, and, for `model.weights=imagenet`,
the file Keras fetches into `<KERAS_HOME or ~/.keras>/models/` (cached, or downloadable now).

Pure Python: Keras's own constructors hold this knowledge only in code that runs after TensorFlow has loaded and
the network is built. `tests/pipeline/test_backbones.py` checks the table against `keras.applications` itself:
the same constructors, and the file Keras fetches for one backbone of each naming rule.
"""

from __future__ import annotations

import difflib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError, one_line

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
DOWNLOAD_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Backbone:
    module: str  # keras.applications.<module>: its preprocess_input, the scaling its ImageNet weights expect
    weights_file: str  # the no-top ImageNet file Keras caches in <keras home>/models/; MobileNet's has {rows}
    url: str  # where Keras downloads it from
    min_size: int = 32  # Keras's minimum height and width (32 where its constructor checks none)
    rows: tuple[int, ...] = ()  # MobileNet v1/v2: the sizes with their own weights (else the 224 file)


def _family(module: str, files: dict[str, str], min_size: int = 32, url: str = "") -> dict[str, Backbone]:
    base = url or f"{KERAS_APPLICATIONS}{module}/"
    return {name: Backbone(module, file, base + file, min_size) for name, file in files.items()}


def _convnext(size: str) -> str:
    return f"convnext_{size.lower()}_notop.h5"


def _tf_kernels(prefix: str) -> str:
    return f"{prefix}_weights_tf_dim_ordering_tf_kernels_notop.h5"


BACKBONES: dict[str, Backbone] = {
    **_family("convnext", {f"ConvNeXt{size}": _convnext(size)
                           for size in ("Tiny", "Small", "Base", "Large", "XLarge")}),
    **_family("densenet", {f"DenseNet{depth}": _tf_kernels(f"densenet{depth}") for depth in (121, 169, 201)}),
    **_family("efficientnet", {f"EfficientNetB{n}": f"efficientnetb{n}_notop.h5" for n in range(8)},
              url="https://storage.googleapis.com/keras-applications/"),
    **_family("efficientnet_v2", {**{f"EfficientNetV2B{n}": f"efficientnetv2-b{n}_notop.h5" for n in range(4)},
                                  **{f"EfficientNetV2{s}": f"efficientnetv2-{s.lower()}_notop.h5" for s in "SML"}}),
    **_family("inception_resnet_v2", {"InceptionResNetV2": _tf_kernels("inception_resnet_v2")}, min_size=75),
    **_family("inception_v3", {"InceptionV3": _tf_kernels("inception_v3")}, min_size=75),
    "MobileNet": Backbone("mobilenet", "mobilenet_1_0_{rows}_tf_no_top.h5",
                          f"{KERAS_APPLICATIONS}mobilenet/mobilenet_1_0_{{rows}}_tf_no_top.h5",
                          rows=(128, 160, 192, 224)),
    "MobileNetV2": Backbone("mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
                            f"{KERAS_APPLICATIONS}mobilenet_v2/"
                            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
                            rows=(96, 128, 160, 192, 224)),
    **_family("mobilenet_v3", {f"MobileNetV3{size}": f"weights_mobilenet_v3_{size.lower()}_224_1.0_float_no_top_v2.h5"
                               for size in ("Small", "Large")}),
    "NASNetMobile": Backbone("nasnet", "nasnet_mobile_no_top.h5",
                             f"{KERAS_APPLICATIONS}nasnet/NASNet-mobile-no-top.h5"),
    "NASNetLarge": Backbone("nasnet", "nasnet_large_no_top.h5", f"{KERAS_APPLICATIONS}nasnet/NASNet-large-no-top.h5"),
    **_family("resnet", {f"ResNet{depth}": _tf_kernels(f"resnet{depth}") for depth in (50, 101, 152)}),
    **_family("resnet_v2", {f"ResNet{depth}V2": _tf_kernels(f"resnet{depth}v2") for depth in (50, 101, 152)},
              url=f"{KERAS_APPLICATIONS}resnet/"),
    **_family("vgg16", {"VGG16": _tf_kernels("vgg16")}),
    **_family("vgg19", {"VGG19": _tf_kernels("vgg19")}),
    **_family("xception", {"Xception": _tf_kernels("xception")}, min_size=71),
}


def backbone_named(name: str) -> Backbone:
    """The table's entry; a ValueError naming close names (the schema's one-line error) for an unknown one."""
    if name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(name, list(BACKBONES), n=3, cutoff=0.5)
    close += [known for known in BACKBONES if known.lower() == name.lower() and known not in close]
    hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(BACKBONES)}"
    raise ValueError(f"model.backbone={name}: not a keras.applications backbone; {hint}")


def keras_home() -> Path:
    """Where Keras caches downloads, as keras/src/backend/config.py decides it: $KERAS_HOME, else ~/.keras (or
    /tmp/.keras when the home folder is not writable)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def imagenet_file(name: str, input_shape: tuple[int, int, int]) -> tuple[str, str]:
    """(file name, URL) of the no-top ImageNet weights Keras fetches for this backbone at this image size."""
    backbone = BACKBONES[name]
    height, width, _ = input_shape
    rows = height if height == width and height in backbone.rows else 224
    return backbone.weights_file.format(rows=rows), backbone.url.format(rows=rows)


def check_backbone(name: str, weights: str | None, input_shape: tuple[int, int, int]) -> None:
    """One-line PipelineError, before TensorFlow loads, for images the backbone cannot take and for ImageNet weights
    that are neither cached nor downloadable."""
    backbone = BACKBONES[name]
    height, width, _ = input_shape
    if min(height, width) < backbone.min_size:
        raise PipelineError(
            f"model.backbone={name} needs images of at least {backbone.min_size}x{backbone.min_size}; the data's are "
            f"{height}x{width} (with data=images set data.image_size=[{backbone.min_size},{backbone.min_size}] or "
            "larger)")
    if weights == "imagenet":
        file_name, url = imagenet_file(name, input_shape)
        cached = keras_home() / "models" / file_name
        if not cached.is_file():
            reason = _unreachable(url)
            if reason:
                raise PipelineError(
                    f"model.weights=imagenet: {name} needs {file_name}, not in {cached.parent} and not downloadable "
                    f"({reason}); download {url} and put it at {cached}, or set model.weights=null or a weights file")


_reachable: dict[str, str | None] = {}  # per URL, for this process (a multirun's jobs, a sweep's trials)


def _unreachable(url: str) -> str | None:
    """Why `url` cannot be downloaded now (no network, a proxy refusing), or None if it can. A HEAD request only:
    Keras downloads the file itself when it builds the backbone. Honours the proxy variables, as Keras's download
    does."""
    if url not in _reachable:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=DOWNLOAD_CHECK_SECONDS):
                _reachable[url] = None
        except (urllib.error.URLError, OSError, ValueError) as error:
            _reachable[url] = one_line(error)
    return _reachable[url]
