"""Workarounds for upstream bugs: the only place that touches private APIs.

Each workaround names its upstream issue and has a test in
`tests/test_compat.py` that shows whether it is still needed (it fails when
upstream is fixed, so the workaround can be removed).
"""

import tensorflow as tf


def patch_for_multi_worker(model, train_ds):
    """Works around two Keras 3 (TF backend) bugs with MultiWorkerMirroredStrategy.

    1. Before training, Keras builds the model symbolically from the first
       distributed batch, averaged with `strategy.reduce("MEAN", (images,
       labels))`; MultiWorkerMirroredStrategy's `reduce` does not take a
       nested structure ("Attempt to convert a value (PerReplica...) to a
       Tensor"). The build only needs shapes and dtypes: it gets one plain
       batch of the undistributed dataset instead.
    2. Keras averages each step's logs across workers with
       `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar logs
       ("Invalid reduction dimension 0 for input with 0 dimensions").
       `train_step`/`test_step` (the documented hooks for customizing `fit`)
       return each log as a 1-element vector, so that reduction concatenates
       the workers' values and averages them: the global mean.

    Upstream: https://github.com/tensorflow/tensorflow/issues/72388 (closed as
    a Keras 3 problem, unfixed in Keras 3.15). `tests/test_compat.py` runs
    `fit` under the strategy without this patch and fails once upstream
    works, so the patch can then be removed.
    """
    build = type(model)._maybe_symbolic_build
    sample = next(iter(train_ds.take(1)))

    def maybe_symbolic_build(iterator=None, data_batch=None):
        return build(model, data_batch=sample if data_batch is None else data_batch)

    def vector_logs(step):
        def wrapped(data):
            logs = step(data)
            return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v
                    for k, v in logs.items()}
        return wrapped

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = vector_logs(type(model).train_step.__get__(model))
    model.test_step = vector_logs(type(model).test_step.__get__(model))
    # Compiled step functions are cached on the model: rebuild them.
    model.train_function = model.test_function = None
