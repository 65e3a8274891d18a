"""Registry of CNN backbones: name -> constructor, preprocessing, smallest input.

Every `keras.applications` family whose `include_top=False` output is a 4-D
feature map is listed, plus two small networks trained from scratch for tiny
datasets and small inputs (>= 28x28): `smallcnn` (one convolution per block:
fast, the tests' and the demo's) and `smallvgg` (two per block: more accurate
on real photographs, twice the compute).

Example:

```python
from medivision_tf import backbones

backbones.available_backbones()[:3]   # ['convnextbase', 'convnextlarge', ...]
spec = backbones.get_backbone("resnet50")
spec.min_size                          # 32
```
"""

import dataclasses
import functools
import string

# keras is imported inside the functions that build networks, so that the
# registry (names, sizes) loads in milliseconds: `medivision --help` and config
# validation read it without starting TensorFlow.

# The model takes raw 0-255 pixels. Each keras.applications family has its own
# `preprocess_input` (some are a pass-through because the network already
# rescales inside). `preprocessing` names the keras.applications module whose
# `preprocess_input` applies; "unit" (x / 255) is ours, for `smallcnn`/`smallvgg`.
PREPROCESSING_MODES = (
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_v2",
    "inception_resnet_v2",
    "inception_v3",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3",
    "resnet",
    "resnet_v2",
    "vgg16",
    "vgg19",
    "xception",
    "unit",
)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What `build_medivision` needs to know about one backbone.

    Attributes:
        name: registry name, lower case (e.g. `"efficientnetb0"`).
        constructor: attribute of `keras.applications` that builds it, or
            `"smallcnn"` / `"smallvgg"` for the from-scratch networks of
            this module (`small_cnn` with 1 / 2 convolutions per block).
        preprocessing: keras.applications module whose `preprocess_input`
            maps raw 0-255 RGB pixels to what the network expects
            (`"unit"`: divide by 255).
        min_size: smallest height/width the network accepts.
        has_imagenet_weights: whether `weights="imagenet"` is possible.
    """

    name: str
    constructor: str
    preprocessing: str
    min_size: int = 32
    has_imagenet_weights: bool = True


def _specs():
    def family(names, preprocessing, min_size=32):
        return [
            BackboneSpec(n.lower(), n, preprocessing, min_size) for n in names
        ]

    specs = [
        *family([f"EfficientNetB{i}" for i in range(8)], "efficientnet"),
        *family(
            [f"EfficientNetV2B{i}" for i in range(4)]
            + ["EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"],
            "efficientnet_v2",
        ),
        *family(["ResNet50", "ResNet101", "ResNet152"], "resnet"),
        *family(["ResNet50V2", "ResNet101V2", "ResNet152V2"], "resnet_v2"),
        *family(["DenseNet121", "DenseNet169", "DenseNet201"], "densenet"),
        *family(["MobileNet"], "mobilenet"),
        *family(["MobileNetV2"], "mobilenet_v2"),
        *family(["MobileNetV3Small", "MobileNetV3Large"], "mobilenet_v3"),
        *family(["VGG16"], "vgg16"),
        *family(["VGG19"], "vgg19"),
        *family(["InceptionV3"], "inception_v3", min_size=75),
        *family(["InceptionResNetV2"], "inception_resnet_v2", min_size=75),
        *family(["Xception"], "xception", min_size=71),
        *family(
            [f"ConvNeXt{s}" for s in ("Tiny", "Small", "Base", "Large", "XLarge")],
            "convnext",
        ),
        BackboneSpec(
            "smallcnn", "smallcnn", "unit", min_size=28, has_imagenet_weights=False
        ),
        BackboneSpec(
            "smallvgg", "smallvgg", "unit", min_size=28, has_imagenet_weights=False
        ),
    ]
    return {spec.name: spec for spec in specs}


BACKBONES = _specs()


def available_backbones():
    """Sorted list of the backbone names `build_medivision` accepts."""
    return sorted(BACKBONES)


def get_backbone(name):
    """Returns the `BackboneSpec` registered under `name` (case-insensitive).

    Raises:
        ValueError: the name is not registered; the message lists valid names.
    """
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of: "
            f"{', '.join(available_backbones())}."
        )
    return BACKBONES[name.lower()]


def preprocess_function(preprocessing):
    """The `preprocess_input` function for a `BackboneSpec.preprocessing` value."""
    import keras
    if preprocessing == "unit":
        return lambda x: x / 255.0
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"Unknown preprocessing {preprocessing!r}. Choose one of: "
            f"{', '.join(PREPROCESSING_MODES)}."
        )
    module = getattr(keras.applications, preprocessing)
    return module.preprocess_input


def small_cnn(
    include_top=False,
    weights=None,
    input_tensor=None,
    input_shape=None,
    filters=(32, 64, 96, 128),
    convs_per_block=1,
    name="smallcnn",
):
    """A small VGG-style CNN for tiny datasets and small inputs (>= 28x28).

    Same calling convention as the keras.applications constructors, so
    `build_medivision` treats it like any of them. With `input_tensor` it is
    built flat in that tensor's graph, so Grad-CAM can reach its last
    convolution by name. Three 2x poolings: a 64x64 input gives an 8x8 map.

    `convs_per_block=2` (VGG's pattern; the registry's `smallvgg`): on 6,000
    Fashion-MNIST training images, same recipe, +0.009 and +0.010 validation
    accuracy over one per block on two seeds, for twice the compute
    (benchmarks/results/recipe_trials.md); its Grad-CAM maps are coarser
    (the demo's pointing game 0.89 against 0.99), so `smallcnn` keeps one.

    Args:
        include_top: must be False (this network has no classifier).
        weights: None (random initialization) or the path of a weights file
            saved from a `small_cnn` model with the same `filters` and
            `convs_per_block`.
        input_tensor: optional 4-D Keras tensor of images scaled to [0, 1].
        input_shape: `(height, width, 3)` when `input_tensor` is not given.
        filters: channels of each conv block; the last block is not pooled.
        convs_per_block: 3x3 convolutions (each with BatchNorm and ReLU) per
            block: layers `conv{i}`, then `conv{i}b`, `conv{i}c`...
        name: the model name and the prefix of its layer names.

    Returns:
        A `keras.Model` ending at the last feature map (layer
        `f"{name}_top_activation"`).

    Example:

    ```python
    cnn = small_cnn(input_shape=(64, 64, 3))
    cnn.output.shape   # (None, 8, 8, 128)
    ```
    """
    import keras

    if include_top:
        raise ValueError("small_cnn has no classifier: pass include_top=False.")
    if weights not in (None,) and not isinstance(weights, str):
        raise ValueError(
            f"small_cnn accepts weights=None or a file path. Received: {weights!r}"
        )
    if (not isinstance(convs_per_block, int) or isinstance(convs_per_block, bool)
            or not 1 <= convs_per_block <= 26):
        raise ValueError(
            f"`convs_per_block` must be an integer from 1 to 26. Received: {convs_per_block!r}"
        )
    inputs = input_tensor
    if inputs is None:
        inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(filters):
        for j in range(convs_per_block):
            tag = f"{i + 1}{string.ascii_lowercase[j] if j else ''}"
            top = i == len(filters) - 1 and j == convs_per_block - 1
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"{name}_conv{tag}"
            )(x)
            # momentum 0.9, not 0.99: tiny datasets give few steps for the moving
            # statistics to settle (see also model.calibrate_batchnorm).
            x = keras.layers.BatchNormalization(
                momentum=0.9, name=f"{name}_norm{tag}"
            )(x)
            x = keras.layers.Activation(
                "relu", name=f"{name}_top_activation" if top else f"{name}_relu{tag}"
            )(x)
        if i < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i + 1}")(x)
    model = keras.Model(keras.utils.get_source_inputs(inputs), x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def constructor(spec):
    """The function that builds `spec`'s network (keras.applications style)."""
    import keras
    if spec.constructor == "smallcnn":
        return small_cnn
    if spec.constructor == "smallvgg":
        return functools.partial(small_cnn, convs_per_block=2, name="smallvgg")
    return getattr(keras.applications, spec.constructor)
