"""Stratified and group splits, k-fold, class weights: seeded and leak-free."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from medivision_tf import data


def table_with_patients(count=120, patients=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 80 + [1] * 30 + [2] * 10)[:count]
    table = data.from_numpy(np.zeros((count, 4, 4), "uint8"), labels, class_names=["a", "b", "c"])
    table["group"] = [f"patient{p}" for p in rng.integers(0, patients, count)]
    return table


def test_split_table_is_stratified_and_seeded():
    table = table_with_patients()
    train, val, test = data.split_table(table, val=0.2, test=0.2, seed=1)
    assert (len(train), len(val), len(test)) == (72, 24, 24)
    for part in (train, val, test):
        shares = part["label"].value_counts(normalize=True).sort_index().to_numpy()
        np.testing.assert_allclose(shares, [80 / 120, 30 / 120, 10 / 120], atol=0.05)
        assert part.attrs["class_names"] == ["a", "b", "c"]
    assert set(train["split"]) == {"train"} and set(test["split"]) == {"test"}
    paths = [set(p["path"]) for p in (train, val, test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    again = data.split_table(table, val=0.2, test=0.2, seed=1)
    assert [list(p["path"]) for p in again] == [list(p["path"]) for p in (train, val, test)]
    other = data.split_table(table, val=0.2, test=0.2, seed=2)
    assert list(other[2]["path"]) != list(test["path"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_split_never_leaks_a_patient(seed):
    table = table_with_patients(seed=seed)
    train, val, test = data.split_table(table, val=0.15, test=0.2, seed=seed, group_column="group")
    groups = [set(p["group"]) for p in (train, val, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(train) + len(val) + len(test) == len(table)
    assert len(val) > 0 and len(test) > 0
    assert 0.08 < len(test) / len(table) < 0.35  # approximate with whole patients


def test_kfold_covers_every_sample_once_and_respects_groups():
    table = table_with_patients()
    folds = data.kfold(table, k=4, seed=0)
    held = np.concatenate([val["path"].to_numpy() for _, val in folds])
    assert sorted(held) == sorted(table["path"])
    for train, val in folds:
        assert not set(train["path"]) & set(val["path"])
        assert val["label"].value_counts()[2] in (2, 3)  # stratified: 10 / 4
    grouped = data.kfold(table, k=5, seed=0, group_column="group")
    for train, val in grouped:
        assert not set(train["group"]) & set(val["group"])
    assert [list(v["path"]) for _, v in data.kfold(table, k=4, seed=0)] == [
        list(v["path"]) for _, v in folds
    ]
    with pytest.raises(ValueError, match="k=1"):
        data.kfold(table, k=1)


def test_class_weights_balance_the_classes():
    table = table_with_patients()
    weights = data.class_weights(table)
    assert weights == pytest.approx({0: 120 / (3 * 80), 1: 120 / (3 * 30), 2: 120 / (3 * 10)})
    counts = table["label"].value_counts()
    assert sum(weights[c] * counts[c] for c in weights) == pytest.approx(len(table))
    multi = data.from_numpy(np.zeros((4, 4, 4), "uint8"),
                            np.array([[1, 0], [1, 1], [1, 0], [1, 0]]))
    assert data.class_weights(multi) == pytest.approx({0: 4 / (2 * 4), 1: 4 / (2 * 1)})
    missing = data.from_numpy(np.zeros((3, 4, 4), "uint8"), [0, 0, 0], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"no samples.*\['b'\]"):
        data.class_weights(missing)


def test_split_arguments_are_checked():
    table = table_with_patients()
    with pytest.raises(ValueError, match="val=1.5"):
        data.split_table(table, val=1.5)
    with pytest.raises(ValueError, match="below 1"):
        data.split_table(table, val=0.6, test=0.5)
    with pytest.raises(ValueError, match="'patient'.*Columns"):
        data.split_table(table, group_column="patient")
    summary = data.summarize(table)
    assert summary.set_index("class_name")["images"].to_dict() == {"a": 80, "b": 30, "c": 10}
    assert isinstance(summary, pd.DataFrame)


def test_class_weights_of_plain_label_arrays():
    assert data.class_weights(np.array([0, 0, 0, 1])) == pytest.approx({0: 4 / 6, 1: 2.0})
    assert data.class_weights([0, 0, 0, 1, -1]) == data.class_weights([0, 0, 0, 1])
    hot = np.array([[1, 0], [1, 1], [1, 0], [1, 0]])
    assert data.class_weights(hot) == pytest.approx({0: 4 / (2 * 4), 1: 4 / (2 * 1)})
    table = table_with_patients()
    assert data.class_weights(table["label"].to_numpy()) == data.class_weights(table)
    with pytest.raises(ValueError, match=r"no samples.*\['2'\]"):  # absent class: no weight
        data.class_weights([0, 1, 1], num_classes=3)
    with pytest.raises(ValueError, match="outside the 2 classes"):
        data.class_weights([0, 1, 2], num_classes=2)
    with pytest.raises(ValueError, match="differs"):
        data.class_weights(table, num_classes=5)
    with pytest.raises(ValueError, match="shape"):
        data.class_weights(np.array([0.5, 1.0]))


def test_by_split_names_blank_and_unknown_split_values():
    import pandas as pd

    from medivision_tf.data import by_split

    base = {"path": ["a", "b", "c"], "label": [0, 1, 0], "class_name": ["x", "y", "x"]}
    with pytest.raises(ValueError, match="2 rows have no split name"):
        by_split(pd.DataFrame({**base, "split": ["train", float("nan"), ""]}))
    with pytest.raises(ValueError, match=r"Unknown split names \['holdout'\]"):
        by_split(pd.DataFrame({**base, "split": ["train", "holdout", "test"]}))
    train, val, test = by_split(pd.DataFrame({**base, "split": ["train", "val", "test"]}))
    assert (len(train), len(val), len(test)) == (1, 1, 1)


def test_load_source_warns_when_a_held_out_split_lacks_a_class(tmp_path):
    """Regression: a volume-level split of a small source left one class out
    of the test split, and the run printed accuracy 0 and AUC nan unexplained."""
    import cv2
    import numpy as np
    import pandas as pd

    from medivision_tf.data.checks.source_splits import load_source
    from medivision_tf.training import TrainConfig

    digits = load_digits()
    rows = []
    for index in range(24):
        name = f"{index:02d}.png"
        cv2.imwrite(str(tmp_path / name), (digits.images[index] * 16).astype("uint8"))
        label = "a" if index % 2 else "b"
        split = "test" if index >= 20 and label == "a" else ("val" if index >= 16 else "train")
        rows.append((name, label, split))
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.warns(UserWarning, match=r"the test split \(2 images\) has no image of \['b'\]"):
        splits, _ = load_source(TrainConfig(source=str(tmp_path / "x.csv")))
    assert len(splits["test"]) == 2
