"""Text the CLI prints: file names that cannot forge rows (no TensorFlow here).

Example:

```python
from medivision_tf.cli._text import quote
quote("scan.png")          # 'scan.png'
quote("a\\tb.png")          # '"a\\\\tb.png"'  (escaped: one field, one line)
```
"""

import json
import os


def quote(name):
    """`name` as it is when it is plain printable text, else JSON-quoted.

    Control characters (newline, tab, carriage return, escape sequences),
    line separators, undecodable bytes and a leading quote are escaped, so a
    file name always stays one field of one line in a printed table.

    Args:
        name: a file name or path (str, bytes or `os.PathLike`).

    Returns:
        The printable text.

    Example:

    ```python
    print(quote("x\\nfake.png\\tnormal\\t1.0000"))   # "x\\nfake.png\\tnormal\\t1.0000"
    ```
    """
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    if text.isprintable() and not text.startswith('"') and text == text.strip():
        return text
    return json.dumps(text)  # ensure_ascii: every non-ASCII character escaped too


#: What each single OOD score's number measures, for the legend.
_SCALES = {
    "knn": "cosine distance to the 5th nearest validation image, 0 to 2",
    "mahalanobis": "distance to the nearest class center, in whitened units",
    "relative_mahalanobis": "distance to the nearest class center minus that to all images; "
                            "can be negative",
}


def trust_legend(trust):
    """One line saying what `predict` and `explain` print next to each image.

    The OOD score's scale depends on its method (kNN's cosine distance is in
    [0, 2], Mahalanobis distances are in whitened units, the relative one can
    be negative, the combined one counts standard deviations of the
    validation images' scores), so the number alone cannot be read without the method and
    the threshold the model carries.

    Args:
        trust: `ModelConfig.trust` (None: no trust values, "").

    Returns:
        The line, or "" without trust values.

    Example:

    ```python
    trust_legend({"temperature": 1.3, "conformal": {"alpha": 0.1},
                  "ood": {"method": "knn", "layer": "feature_map", "threshold": 0.61,
                          "accept_rate": 0.95}})
    ```
    """
    if not trust:
        return ""
    ood = trust["ood"]
    if ood["method"] == "combined":
        # The components read the stored layer's parts, in order (trust.core).
        knn_layer, gaussian_layer = ood.get("layer", "feature_map+pool").split("+")
        score = (f"ood is the combined score (kNN on layer {knn_layer!r}, Mahalanobis on layer "
                 f"{gaussian_layer!r}, whichever is higher, in standard deviations from the "
                 "validation images' mean score: 0 is typical, negative more typical still)")
    else:
        scale = _SCALES.get(ood["method"])  # a method this version does not know: no scale
        score = (f"ood is the {ood['method']} score on layer "
                 f"{ood.get('layer', 'feature_map')!r}" + (f" ({scale})" if scale else ""))
    return (
        f"Probabilities are calibrated (temperature {trust['temperature']:.3g}); sets cover "
        f"about {1 - trust['conformal']['alpha']:.0%} of images like the validation images; "
        f"{score}, "
        f"OUT-OF-DISTRIBUTION above {ood['threshold']:.4g} (set to flag about "
        f"{1 - ood.get('accept_rate', 0.95):.0%} of new images like the validation images)."
    )
