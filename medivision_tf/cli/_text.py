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
