"""The two ends of `make_dataset`'s stream: seeded passes over a table, and the batches.

`passes` orders the rows of each pass by a seed keyed by the pass's number,
so a repeated stream can start at any example (`make_dataset(...).start_at`)
and give what an uninterrupted iteration gives there. `finish_stream` turns
`(image, label, index, key)` elements into augmented, batched
`(images, labels)`: per-example augmentation draws keyed by (seed, pass,
index), batching, float32, prefetch.

Example:

```python
import tensorflow as tf
from medivision_tf.data.pipeline.streams import passes

columns = (tf.constant(["a.png", "b.png", "c.png"]), tf.constant([0, 1, 0]))
stream = passes(columns, 3, shuffle=True, seed=0, repeat=True, start=4)
[path for path, label, key in stream.take(2)]     # the 5th and 6th examples
```
"""

import tensorflow as tf

from medivision_tf.data.pipeline.augment import apply_augmentation, example_draws

AUTOTUNE = tf.data.AUTOTUNE


def passes(columns, count, *, shuffle, seed, repeat, start=0):
    """Passes over the rows of `columns`, each ordered by a seed keyed by its number.

    Elements are the rows plus the pass key (for the augmentation draws).
    With `repeat`, pass k is a permutation drawn from (seed, k) alone, so the
    stream can start at any example (`start`) and give what an uninterrupted
    iteration gives there: a resumed `fit` sees the batches the killed one
    would have seen. (`Dataset.shuffle(reshuffle_each_iteration=True)` cannot:
    its order depends on how many passes the same iterator made, and it
    takes no per-pass tensor seed once a global seed of 0 is set.) Without
    `repeat`, one pass whose key is drawn anew each iteration: a new order
    each epoch.
    """

    # Paths, labels and indices are gathered whole each pass; an image array
    # (array sources) is gathered one row at a time, never copied whole.
    small_columns = all(column.shape.rank is not None and column.shape.rank <= 2
                        for column in columns)

    def one_pass(key):
        if shuffle:
            noise = tf.random.stateless_uniform(
                [count], seed=tf.stack([tf.constant(seed, tf.int64), key]))
            order = tf.argsort(noise, stable=True)
        else:
            order = tf.range(count)
        if small_columns:  # one gather per pass instead of a map per example
            return tf.data.Dataset.from_tensor_slices(
                (*(tf.gather(column, order) for column in columns), tf.fill([count], key)))
        return tf.data.Dataset.from_tensor_slices(order).map(
            lambda row: (*(tf.gather(column, row) for column in columns), key))

    if repeat:
        first, skip = divmod(start, count)
        stream = tf.data.Dataset.range(first, 2**62).flat_map(one_pass)
        stream = stream.apply(tf.data.experimental.assert_cardinality(
            tf.data.INFINITE_CARDINALITY))
        return stream.skip(skip) if skip else stream
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return keys.flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(count))


def finish_stream(dataset, *, stateless, draw_seed, batch_size, drop_remainder, kind,
                   augment_with, cache, prefetch, names):
    """(image, label, index, key) stream -> augmented, batched (images, labels)."""
    if stateless:
        # Per-example draws keyed by (seed, pass key, example index): the
        # augmentation map may run in parallel and in any order and still
        # give the same images every run.
        dataset = dataset.map(
            lambda image, label, index, key: (
                image, label, example_draws(draw_seed, key, index)
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if not stateless:  # the index and key columns dropped per batch, not per example
        dataset = dataset.map(lambda images, labels, index, key: (images, labels))

    if stateless:
        options = augment_with

        def augment_batch(images, labels, draws):
            images = apply_augmentation(tf.cast(images, tf.float32), draws, options,
                                        compiled=True)
            return images, labels

        dataset = dataset.map(augment_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
    elif kind == "layer":
        # Your own layer draws from its own state: in order (not in
        # parallel) so that its seeded draws give the same batches every run.
        dataset = dataset.map(
            lambda images, labels: (augment_with(tf.cast(images, tf.float32), training=True),
                                    labels)
        )
    elif cache:
        dataset = dataset.map(
            lambda images, labels: (tf.cast(images, tf.float32), labels),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )
    if prefetch:
        dataset = dataset.prefetch(AUTOTUNE)
    dataset.class_names = names
    return dataset
