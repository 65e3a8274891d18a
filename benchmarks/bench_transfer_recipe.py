"""How the default phase-2 recipe was chosen: phase-2 variants on validation images only.

```
python benchmarks/bench_transfer_recipe.py BACKBONE --json OUT.json
    [--head-epochs 3] [--fine-tune-epochs 2] [--variants v1,v2,v3,v5,v6] [--baselines]
```

One seed (0). 2,000 Fashion-MNIST images of the official training split (200 a
class) at 96 px, one channel: 1,700 train the model; the variants are scored
on 2,000 *other* images of the training split (never the test split). The
head is trained once (`--head-epochs` at Adam 1e-3, label smoothing 0.1,
backbone frozen, MediVision's default head) and every variant starts from
those same weights, so the variants differ only in phase 2 (`--fine-tune-epochs`,
the whole backbone unfrozen, BatchNorm frozen):

- `v0`: Adam 1e-4, constant (the defaults before the warm-up);
- `v1`: Adam 1e-5, constant (Keras' transfer-learning guide);
- `v2`: Adam, linear warm-up from 0 over the first epoch, then cosine to 0, peak 1e-4;
- `v3`: the same, peak 3e-5;
- `v5`: SGD (momentum 0.9, Nesterov), warm-up 1 epoch + cosine, peak 1e-3;
- `v6`: Adam 1e-5, cosine to 0, no warm-up;
- `w3_1e4` / `w3_3e5` / `w3_1e5`: Adam, warm-up over 30% of phase 2 then cosine, peak
  1e-4 / 3e-5 / 1e-5 (the shape of the default, `fine_tune_warmup=0.3`,
  `fine_tune_lr_schedule="cosine"`).

`--baselines` adds the head alone trained for the phase-2 epochs too
(`head_more`) and Keras' guide with its pooling head (`guide_pooling`: frozen
at Adam 1e-3, then all at Adam 1e-5).

The backbone files are `bench_transfer.py`'s (public wheels, fetched).
Committed runs: `results/transfer_recipe_densenet121.json` (3 + 2 epochs),
`results/transfer_recipe_xception.json` (2 + 1 epochs, the budget of
`bench_transfer.py`) and `results/transfer_recipe_densenet121_long.json` (10 + 5
epochs, the command line's defaults: `--head-epochs 10 --fine-tune-epochs 5
--variants w3_3e5,w3_1e5,w3_1e4`), from which the pretrained default was chosen.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SIZE = 96
#: The variant `TrainConfig`'s phase-2 defaults are (`fine_tune_learning_rate`,
#: `fine_tune_warmup=0.3`, `fine_tune_lr_schedule="cosine"`); tests check they agree.
DEFAULT_VARIANT = "w3_3e5"


def _data():
    import cv2

    import bench_transfer

    folder = bench_transfer.FASHION_DIR
    x0 = bench_transfer.read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))
    y0 = bench_transfer.read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(y0 == c), 200, replace=False)
                           for c in range(10)])
    rng.shuffle(pick)
    rest = np.setdiff1d(np.arange(len(y0)), pick)
    held = rng.choice(rest, 2000, replace=False)

    def up(images):
        return np.stack([cv2.resize(i, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
                         for i in images])[..., None].astype("float32")

    return up(x0[pick[:1700]]), y0[pick[:1700]].astype("int32"), up(x0[held]), y0[held]


def _optimizer(variant, steps, epochs):
    import keras

    total = steps * epochs

    def warm_cosine(peak, warmup_steps):
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup_steps, 1), warmup_target=peak,
            warmup_steps=warmup_steps)

    variants = {
        "v0": lambda: keras.optimizers.Adam(1e-4),
        "v1": lambda: keras.optimizers.Adam(1e-5),
        "v2": lambda: keras.optimizers.Adam(warm_cosine(1e-4, steps)),
        "v3": lambda: keras.optimizers.Adam(warm_cosine(3e-5, steps)),
        "v5": lambda: keras.optimizers.SGD(warm_cosine(1e-3, steps), momentum=0.9,
                                           nesterov=True),
        "v6": lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            1e-5, total)),
        "w3_1e4": lambda: keras.optimizers.Adam(warm_cosine(1e-4, int(0.3 * total))),
        "w3_3e5": lambda: keras.optimizers.Adam(warm_cosine(3e-5, int(0.3 * total))),
        "w3_1e5": lambda: keras.optimizers.Adam(warm_cosine(1e-5, int(0.3 * total))),
    }
    if variant not in variants:
        raise ValueError(f"Unknown variant {variant!r}. Choose from: {', '.join(variants)}.")
    return variants[variant]()


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("backbone", help="densenet121 or xception (bench_transfer.SOURCES)")
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--variants", default="v1,v2,v3,v5,v6")
    parser.add_argument("--baselines", action="store_true")
    args = parser.parse_args(argv)
    import keras

    import bench_transfer
    import medivision_tf
    from medivision_tf.finetune import set_backbone_trainable

    weights = bench_transfer.pretrained_file(args.backbone)
    x, y, held_x, held_y = _data()
    one_hot = keras.utils.to_categorical(y, 10)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    steps = int(np.ceil(len(x) / 32))

    def held_accuracy(model):
        return float(np.mean(model.predict(held_x, batch_size=64, verbose=0).argmax(-1)
                             == held_y))

    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(10, backbone=args.backbone, weights=weights,
                                           input_shape=(SIZE, SIZE, 1))
    set_backbone_trainable(model, False)
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    phase1 = model.fit(x, one_hot, batch_size=32, epochs=args.head_epochs, verbose=2)
    head_weights = model.get_weights()
    results = {"settings": vars(args), "machine": common.machine_info(),
               "source": bench_transfer.SOURCES[args.backbone], "phase1": phase1.history}
    for variant in args.variants.split(","):
        model.set_weights(head_weights)
        set_backbone_trainable(model, True, keep_batchnorm_frozen=True)
        model.compile(_optimizer(variant, steps, args.fine_tune_epochs), loss,
                      metrics=["accuracy"])
        start = time.perf_counter()
        history = model.fit(x, one_hot, batch_size=32, epochs=args.fine_tune_epochs, verbose=2)
        results[variant] = dict(history.history, seconds=time.perf_counter() - start,
                                big_val=held_accuracy(model))
        print(variant, results[variant], flush=True)
        common.write_results(results, args.json)
    if args.baselines:
        model.set_weights(head_weights)
        set_backbone_trainable(model, False)
        model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
        history = model.fit(x, one_hot, batch_size=32, epochs=args.fine_tune_epochs, verbose=2)
        results["head_more"] = dict(history.history, big_val=held_accuracy(model))
        keras.utils.set_random_seed(0)
        base = medivision_tf.build_pooling_baseline(10, backbone=args.backbone, weights=weights,
                                                    input_shape=(SIZE, SIZE, 1))
        set_backbone_trainable(base, False)
        base.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
        head = base.fit(x, one_hot, batch_size=32, epochs=args.head_epochs, verbose=2)
        set_backbone_trainable(base, True, keep_batchnorm_frozen=True)
        base.compile(keras.optimizers.Adam(1e-5), loss, metrics=["accuracy"])
        history = base.fit(x, one_hot, batch_size=32, epochs=args.fine_tune_epochs, verbose=2)
        results["guide_pooling"] = dict(phase1=head.history, **history.history,
                                        big_val=held_accuracy(base))
        common.write_results(results, args.json)
    return 0


def render_table(densenet, xception, long=None):
    """docs/training.md's table of the trials (no TensorFlow).

    `long` (optional): a run with the command line's epochs (10 + 5), a
    column of its own.
    """
    names = {"v0": "Adam 1e-4 constant (the old default)", "v1": "Adam 1e-5 constant (Keras guide)",
             "v2": "Adam, warm-up 1 epoch + cosine, peak 1e-4", "v3": "the same, peak 3e-5",
             "v5": "SGD, warm-up 1 epoch + cosine, peak 1e-3", "v6": "Adam 1e-5, cosine, no warm-up",
             "w3_1e4": "Adam, warm-up 30% + cosine, peak 1e-4",
             "w3_3e5": "Adam, warm-up 30% + cosine, peak 3e-5",
             "w3_1e5": "Adam, warm-up 30% + cosine, peak 1e-5",
             "head_more": "head only, the phase-2 epochs too",
             "guide_pooling": "Keras guide with a pooling head"}
    names[DEFAULT_VARIANT] = f"**{names[DEFAULT_VARIANT]} (the default)**"
    runs = [("DenseNet121", densenet), ("Xception", xception)]
    if long is not None:
        runs.append(("DenseNet121", long))
    header = " | ".join(f"{name} ({run['settings']['head_epochs']} + "
                        f"{run['settings']['fine_tune_epochs']} epochs)" for name, run in runs)
    lines = [f"| phase 2 | {header} |", "|---|" + "---:|" * len(runs)]
    for key, name in names.items():
        cells = []
        for _, run in runs:
            head = run["settings"]["head_epochs"]
            entry = run.get(key)
            if entry is None:
                cells.append("")
                continue
            last_head = run["phase1"]["accuracy"][head - 1]
            switch = ""
            if key != "head_more" and "accuracy" in entry and key != "guide_pooling":
                switch = f" (train acc. {last_head:.3f} → {entry['accuracy'][0]:.3f}"
                if len(entry["accuracy"]) > 2:  # a long phase 2: its lowest epoch too
                    switch += f", lowest {min(entry['accuracy']):.3f}"
                switch += ")"
            cells.append(f"{entry['big_val']:.4f}{switch}")
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
