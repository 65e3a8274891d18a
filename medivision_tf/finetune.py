"""Transfer-learning controls of a built model: freeze or unfreeze the backbone, set and re-estimate BatchNorm statistics.

Example:

```python
from medivision_tf.finetune import calibrate_batchnorm, set_backbone_trainable

set_backbone_trainable(model, False)   # phase 1: head only
set_backbone_trainable(model, 20)      # phase 2: top 20 backbone layers
calibrate_batchnorm(model, train_images)
```
"""

import keras
import numpy as np

from medivision_tf.model_access import all_layers, backbone_layers


def set_backbone_trainable(model, trainable, keep_batchnorm_frozen=True):
    """Freezes or unfreezes the backbone for transfer learning.

    Recompile the model afterwards for the change to take effect in `fit`.

    Args:
        model: a model from `build_medivision`.
        trainable: `False` freezes the whole backbone (train the head only),
            `True` unfreezes all of it, an integer `n` unfreezes only its top
            `n` layers (the rest stays frozen).
        keep_batchnorm_frozen: keep BatchNormalization layers frozen (they then
            run in inference mode, keeping their pretrained statistics) when
            unfreezing, as recommended when fine-tuning a pretrained network.
            Set it to False to train a backbone from scratch.

    Returns:
        The number of backbone layers left trainable.

    Example:

    ```python
    set_backbone_trainable(model, False)   # phase 1: head only
    set_backbone_trainable(model, 20)      # phase 2: top 20 backbone layers
    ```
    """
    layers = backbone_layers(model)
    if isinstance(trainable, bool):
        first_trainable = 0 if trainable else len(layers)
    elif isinstance(trainable, (int, np.integer)) and trainable >= 0:
        first_trainable = max(len(layers) - int(trainable), 0)
    else:
        raise ValueError(
            "`trainable` must be True, False or a number of top layers >= 0. "
            f"Received: trainable={trainable!r}"
        )
    count = 0
    for index, layer in enumerate(layers):
        unfreeze = index >= first_trainable
        if keep_batchnorm_frozen and isinstance(layer, keras.layers.BatchNormalization):
            unfreeze = False
        layer.trainable = unfreeze
        count += unfreeze
    return count


def set_batchnorm_momentum(model, momentum):
    """Sets the momentum of every BatchNormalization layer's moving statistics.

    Args:
        model: a Keras model.
        momentum: in `[0, 1)`; lower tracks the batch statistics faster.

    Returns:
        The number of BatchNorm layers changed.

    Example:

    ```python
    set_batchnorm_momentum(model, 0.9)   # before fit, when training from scratch
    ```
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    layers = [layer for layer in all_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def calibrate_batchnorm(model, images, batch_size=32, max_batches=None):
    """Re-estimates the moving statistics of the model's trainable BatchNorm layers.

    After a short training from scratch, BatchNorm's moving averages lag
    behind the fast-changing weights, so inference mode (what `predict`,
    exports and Grad-CAM use) can differ from training mode, up to predicting
    one class for every image. This replaces each moving mean and variance by
    the average of the batch statistics over `images`, with the weights fixed.
    Keras has no such step, so it is written here. Frozen BatchNorm layers
    (pretrained, in inference mode) are left alone.

    Args:
        model: a Keras model (e.g. from `build_medivision`).
        images: array `(n, height, width, channels)` of raw pixels, or
            batches of images or of `(images, labels)`: a
            `keras.utils.PyDataset`, a `tf.data.Dataset` (TensorFlow), a
            `torch.utils.data.DataLoader` (PyTorch) or any iterable.
        batch_size: batch size when `images` is an array.
        max_batches: stop after this many batches (default: all).

    Returns:
        The number of BatchNorm layers re-estimated.

    Example:

    ```python
    model.fit(train_images, train_labels, epochs=3)
    calibrate_batchnorm(model, train_images)
    ```
    """
    layers = [
        layer
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not layers:
        return 0
    if isinstance(images, np.ndarray):
        batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    elif isinstance(images, keras.utils.PyDataset):  # indexed, not iterated
        batches = (
            b[0] if isinstance(b, (tuple, list)) else b
            for b in (images[i] for i in range(images.num_batches))
        )
    else:
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in images)
    momenta = [layer.momentum for layer in layers]
    try:
        for step, batch in enumerate(batches, start=1):
            if max_batches is not None and step > max_batches:
                break
            # Momentum 1 - 1/step turns the moving average into the plain
            # mean of the batch statistics seen so far.
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / step
            model(keras.ops.convert_to_tensor(batch, "float32"), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)
