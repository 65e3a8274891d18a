"""Pretrained backbone weights from a local file, in every form users have.

`build_medivision(..., weights=FILE)` accepts:

- a backbone's own weights: a Keras 3 `.weights.h5` (`backbone.save_weights`),
  a legacy `.h5` (Keras 2 / `keras.applications`' `*_notop.h5`) or a `.keras`
  file of the backbone alone, saved at any input size;
- a whole classifier that contains the backbone: a `.keras` file or a legacy
  `.h5` model with the backbone nested as one layer (the usual
  `Sequential([DenseNet121(...), GlobalAveragePooling2D(), Dense(...)])`), or
  built flat (`input_tensor=`), such as a MediVision model. The backbone's
  weights are taken out; the rest is ignored.

A file that holds no weights of the asked backbone is refused with one error
that names the backbone, the file and what the file holds, instead of Keras'
hundreds of "Skipping nested container" warnings and its "A total of N
objects could not be loaded".

Keras loads a weights file into a model of the same structure only; it has
no way to find a backbone inside another model's file, so the search is
written here. It reads the HDF5 layout Keras writes (h5py, a Keras
dependency) and never deserializes the file's model config unless the
weights cannot be matched by their layout alone: then the model is loaded
with `safe_mode=True` (no code from the file runs).

Example:

```python
import keras
from medivision_tf import backbones
from medivision_tf.backbone_weights import load_backbone_weights

keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                               input_shape=(96, 96, 3)).save_weights("mnv2.weights.h5")
spec = backbones.get_backbone("mobilenetv2")
standalone = load_backbone_weights(spec, "mnv2.weights.h5", (64, 64, 3), alpha=0.35)
```
"""

import contextlib
import json
import os
import tempfile
import warnings
import zipfile

import h5py
import keras
import numpy as np

from medivision_tf import backbones

#: File name endings `weights=` accepts.
WEIGHTS_SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5")


def load_backbone_weights(spec, path, input_shape, **constructor_kwargs):
    """A standalone backbone holding the pretrained weights of `path`.

    Args:
        spec: the `backbones.BackboneSpec` to build.
        path: a weights file in any form this module accepts (see its docstring).
        input_shape: `(height, width, 3)` to build the backbone at; the file may
            come from any input size (convolution weights do not depend on it).
        **constructor_kwargs: extra arguments of the backbone constructor.

    Returns:
        A `keras.Model` (`include_top=False`) with the file's weights.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a Keras weights or model file, or holds no
            weights of `spec`'s backbone (the message names both, and what the
            file holds).

    Example:

    ```python
    spec = backbones.get_backbone("densenet121")
    cnn = load_backbone_weights(spec, "capricorn.keras", (96, 96, 3))
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Backbone weights file not found: {path!r}. `weights` must be "
            '"imagenet", None, or the path of an existing weights file.'
        )
    build = backbones.constructor(spec)
    target = build(include_top=False, weights=None, input_shape=tuple(input_shape),
                   **constructor_kwargs)
    with tempfile.TemporaryDirectory(prefix="medivision-weights-") as scratch:
        expected = _expected_layout(target, scratch)
        if zipfile.is_zipfile(path):
            found = _from_keras_archive(target, path, expected, scratch)
        elif h5py.is_hdf5(path):
            found = _from_h5(target, path, expected, scratch)
        else:
            raise ValueError(
                f"Backbone weights file {path!r} is neither a Keras weights file "
                "(.weights.h5, legacy .h5) nor a .keras model file. `weights` takes "
                f'"imagenet", None, or a file ending in {", ".join(WEIGHTS_SUFFIXES)}.'
            )
    if found is not True:
        raise ValueError(_mismatch_message(spec, path, found))
    return target


def copy_backbone_weights(source, target):
    """Copies `source`'s weights into `target`, a twin built by the same constructor.

    `build_medivision` builds its backbone flat in its own graph; the weights
    are loaded into a standalone twin first and copied over layer by layer,
    in order (layers Keras names automatically, such as Xception's `conv2d`,
    get other names in the second build, so names cannot pair them).

    Returns:
        The number of layers copied.
    """
    pairs = list(zip(_weighted(source.layers), _weighted(target.layers)))
    for mine, theirs in pairs:
        if type(mine) is not type(theirs) or _shapes(mine) != _shapes(theirs):
            raise ValueError(
                f"Backbone twins differ at layer {mine.name!r} / {theirs.name!r}: "
                f"{_shapes(mine)} against {_shapes(theirs)}."
            )
        theirs.set_weights(mine.get_weights())
    return len(pairs)


def _weighted(layers):
    return [layer for layer in layers if layer.weights]


def _shapes(layer):
    return [tuple(w.shape) for w in layer.weights]


# === The layout Keras writes for the target ===


def _expected_layout(model, scratch):
    """`{dataset path: shape}` of `model.save_weights` (the Keras 3 layout)."""
    probe = os.path.join(scratch, "expected.weights.h5")
    with _quiet_keras():
        model.save_weights(probe)
    with h5py.File(probe, "r") as f:
        layout = _datasets(f)
    os.remove(probe)
    return layout


def _datasets(group):
    found = {}
    group.visititems(
        lambda name, item: found.__setitem__(name, item.shape)
        if isinstance(item, h5py.Dataset) else None
    )
    return found


def _matching_group(h5file, expected):
    """The first group (breadth first) whose datasets are exactly `expected`."""
    queue = [h5file]
    while queue:
        group = queue.pop(0)
        if _datasets(group) == expected:
            return group
        queue.extend(item for item in group.values() if isinstance(item, h5py.Group))
    return None


def _load_group(target, group, scratch):
    """Loads one HDF5 group in Keras 3's weights layout into `target`."""
    single = os.path.join(scratch, "backbone.weights.h5")
    with h5py.File(single, "w") as out:
        for key in group.keys():
            group.file.copy(group[key], out, name=key)
        for key, value in group.file.attrs.items():
            out.attrs[key] = value
    with _quiet_keras():
        target.load_weights(single)
    return True


# === .keras archives ===


def _from_keras_archive(target, path, expected, scratch):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "model.weights.h5" not in names:
            raise ValueError(
                f"{path!r} is a zip file but not a Keras .keras file (it has no "
                "model.weights.h5)."
            )
        weights = archive.extract("model.weights.h5", scratch)
        config = json.loads(archive.read("config.json")) if "config.json" in names else {}
    with h5py.File(weights, "r") as f:
        group = _matching_group(f, expected)
        if group is not None:
            return _load_group(target, group, scratch)
    if _copy_from_loaded_model(target, path):
        return True
    return _describe_config(config)


# === legacy .h5 (Keras 2 and keras.applications files) and .weights.h5 ===


def _from_h5(target, path, expected, scratch):
    with h5py.File(path, "r") as f:
        if "layer_names" not in f.attrs and "model_weights" not in f:
            group = _matching_group(f, expected)  # a Keras 3 .weights.h5
            if group is not None:
                return _load_group(target, group, scratch)
            return (f"{len(_datasets(f))} weight arrays in Keras 3's layout "
                    f"({len(expected)} for this backbone)")
        root = f["model_weights"] if "model_weights" in f else f
        if _legacy_by_name(target, root):
            return True
        config = f.attrs.get("model_config")
        described = _describe_config(json.loads(config)) if config is not None else None
        names = [_text(n) for n in root.attrs.get("layer_names", [])]
    if described:
        return described
    return f"{len(names)} layers in the legacy layout, e.g. {', '.join(names[:4])}"


def _legacy_by_name(target, root):
    """Loads the target's layers from a legacy file: its layers at the top
    level (a backbone's own file) or inside one nested model (a classifier).

    In the legacy layout each top-level layer is a group named after it, and
    a nested model's group lists its weights as `layer/variable` names.
    """
    saved = []
    for name in (_text(n) for n in root.attrs.get("layer_names", [])):
        per_layer = {}
        for weight_name, array in _legacy_arrays(root[name]).items():
            parts = weight_name.split("/")
            layer = parts[-2] if len(parts) >= 2 else name
            per_layer.setdefault(layer, {})[parts[-1]] = array
        saved.extend(per_layer.items())
    return _align_and_assign(target, saved)


def _legacy_arrays(group):
    """`{weight name: array}` of one legacy layer group, ':0' suffixes dropped."""
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    return {name.split(":")[0]: np.asarray(group[name]) for name in names}


def _align_and_assign(target, saved):
    """Finds the target's weighted layers as one run in `saved` and sets them.

    Args:
        target: the standalone backbone.
        saved: `[(layer name, {variable name: array}), ...]` of the file's
            weighted layers in model order (nested models expanded).

    Returns:
        Whether a run of `len(target's weighted layers)` saved layers matched
        every variable name and shape (then the weights are set).
    """
    wanted = _weighted(target.layers)
    shapes = [{v.name: tuple(v.shape) for v in layer.weights} for layer in wanted]
    saved_shapes = [{k: tuple(a.shape) for k, a in arrays.items()} for _, arrays in saved]
    for offset in range(len(saved) - len(wanted) + 1):
        if all(saved_shapes[offset + i] == shapes[i] for i in range(len(wanted))):
            for i, layer in enumerate(wanted):
                arrays = saved[offset + i][1]
                layer.set_weights([arrays[v.name] for v in layer.weights])
            return True
    return False


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# === A classifier built flat (e.g. a MediVision model) ===


def _copy_from_loaded_model(target, path):
    """Loads the whole model (safe mode) and takes the backbone's layers from it.

    For a `.keras` classifier whose backbone layers are not nested in one
    sub-model (built with `input_tensor=`, as `build_medivision` does), where
    Keras' layout names them by class and position among all of the model's
    layers.
    """
    try:
        with _quiet_keras():
            import medivision_tf.layers  # noqa: F401 (registers MediVision's layers)

            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception:  # noqa: BLE001 (any failure: the file is described instead)
        return False
    saved = [
        (layer.name, {v.name: array for v, array in zip(layer.weights, layer.get_weights())})
        for layer in _all_layers(model) if layer.weights and not hasattr(layer, "layers")
    ]
    return _align_and_assign(target, saved)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


# === Errors ===


def _describe_config(config):
    """What a saved model config holds: `(description, nested model names)`."""
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    nested = [
        (layer["config"].get("name"), len(layer["config"]["layers"]))
        for layer in layers
        if isinstance(layer, dict) and isinstance(layer.get("config"), dict)
        and isinstance(layer["config"].get("layers"), list)
    ]
    name = inner.get("name", "?") if isinstance(inner, dict) else "?"
    if nested:
        listed = ", ".join(f"{n!r} ({count} layers)" for n, count in nested)
        return f"a model {name!r} with the nested model(s) {listed}", [n for n, _ in nested]
    return f"a model {name!r} of {len(layers)} layers with no nested backbone", []


def _mismatch_message(spec, path, found):
    description, nested = found if isinstance(found, tuple) else (found, [])
    built = f"keras.applications.{spec.constructor}" if spec.constructor not in (
        "smallcnn", "smallvgg") else f"medivision_tf.backbones {spec.name}"
    lines = [
        f"Weights file {path!r} holds no {spec.name} backbone: it holds {description}, "
        f"and no part of it has the layers and weight shapes of {built}(include_top=False)."
    ]
    known = [(n, _registry_name(n)) for n in nested if _registry_name(n)]
    if any(registry == spec.name for _, registry in known):
        lines.append(f"Its nested {spec.name} is another variant (another width `alpha`, "
                     "depth or input channels) than the one build_medivision builds.")
    known = [(n, registry) for n, registry in known if registry != spec.name]
    if known:
        lines.append("It looks like a " + ", ".join(f"{r} ({n!r})" for n, r in known)
                     + f": use backbone={known[0][1]!r} (--backbone {known[0][1]}).")
    if nested:
        lines.append(
            "To use a nested model's weights as a file of their own:\n"
            f"  python -c \"import keras; m = keras.saving.load_model({path!r}, compile=False); "
            f"m.get_layer({nested[0]!r}).save_weights('backbone.weights.h5')\""
        )
    else:
        lines.append("Pass a weights file saved from that backbone, or the backbone the file "
                     "was saved from (see medivision_tf.available_backbones()).")
    return "\n".join(lines)


def _registry_name(name):
    """The registry backbone a nested model's name points to (`mobilenetv2_1.00_224` ...)."""
    name = str(name or "").lower()
    matches = [b for b in backbones.available_backbones() if name.startswith(b)]
    return max(matches, key=len) if matches else None


@contextlib.contextmanager
def _quiet_keras():
    """Keras' own per-layer warnings while loading (one error of ours says it instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
