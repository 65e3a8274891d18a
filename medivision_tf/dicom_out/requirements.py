"""What `dicom_out` needs beyond the base install, and the message that says so.

`highdicom` (writing the SR and Secondary Capture objects) and
`dicomweb-client` (QIDO-RS / WADO-RS / STOW-RS) come with the `[pacs]`
extra; the base install (`pip install -e .`) does not need them, and
`medivision dicom-report` without them says exactly what to install.

Example:

```python
from medivision_tf.dicom_out.requirements import require_pacs

require_pacs("highdicom")          # ValueError naming the pip command when missing
```
"""

import importlib.util

#: The pip command that brings what `dicom-report` needs.
PACS_EXTRA = ("pip install 'medivision-tf[pacs]' (in a checkout: pip install -e '.[pacs]'; "
              "or: pip install highdicom dicomweb-client)")
_MODULES = {"highdicom": "highdicom", "dicomweb-client": "dicomweb_client"}


def require_pacs(*packages):
    """Refuses, with the pip command, when a package of the `[pacs]` extra is missing.

    Args:
        packages: distribution names among `highdicom`, `dicomweb-client`
            (default: both).

    Raises:
        ValueError: `"... needs highdicom, which is not installed. Install the
            PACS extra: pip install ..."`.
    """
    missing = [name for name in (packages or tuple(_MODULES))
               if importlib.util.find_spec(_MODULES[name]) is None]
    if missing:
        raise ValueError(
            f"DICOM results need {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install the PACS extra: "
            f"{PACS_EXTRA}.")
