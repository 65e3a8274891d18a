"""Data sources, tf.data pipelines and synthetic lesion data."""

from medivision_tf.data.synthetic import (
    LESION_PATTERNS,
    SyntheticLesions,
    make_synthetic_lesions,
)
