"""Reading only regular files: a FIFO, device or socket is named, never opened.

A FIFO named `x.png` would block its reader forever and a device could stream
without end, so every reader of a sample's bytes outside the graph goes
through here: `describe_file` says from `os.stat` alone why a path must not be
opened; `read_file_bytes` and `read_head` open it non-blocking and check the
open file again (`fstat`), so a file swapped for a FIFO in between is still
not read. This module imports neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data.io.regular_files import describe_file, read_head

describe_file("/dev/zero")   # ('not_regular', "'/dev/zero' is a character device")
read_head("/dev/zero", 4)    # None: not a regular file
```
"""

import os
import stat

_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def read_head(path, length):
    """The first `length` bytes of a regular file, or None (not a regular
    file, or unreadable): opened non-blocking, checked again by `fstat`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with open(fd, "rb") as handle:  # owns and closes fd
        try:
            return handle.read(length) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except OSError:
            return None


def describe_file(path):
    """Why `path` must not be opened, from `os.stat` alone, or None.

    Only regular files are read: a FIFO named `x.png` would block the
    reader forever, a device could stream without end.

    Returns:
        None for a regular file, else `(reason, detail)` (`missing`,
        `unreadable` or `not_regular`).

    Example:

    ```python
    describe_file("/dev/zero")   # ('not_regular', "'/dev/zero' is a character device")
    ```
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "missing", f"{path!r} does not exist (or is a broken link)"
    except OSError as error:
        return "unreadable", f"{path!r}: {type(error).__name__}: {error.strerror or error}"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        return "not_regular", f"{path!r} is {kind}"
    return None


def read_file_bytes(path, limit=None):
    """Reads a regular file's bytes (at most `limit`) without blocking.

    `os.open` with `O_NONBLOCK`, then `fstat` again: a file swapped for a
    FIFO after `describe_file` still is not read.

    Returns:
        `(data, None)` or `(None, (reason, detail))`.
    """
    problem = describe_file(path)
    if problem:
        return None, problem
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        return None, ("unreadable", f"{path!r}: {type(error).__name__}: {error.strerror or error}")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None, ("not_regular", f"{path!r} is not a regular file")
    try:
        with open(fd, "rb") as handle:  # owns and closes fd
            data = handle.read() if limit is None else handle.read(limit)
    except OSError as error:
        return None, ("unreadable", f"{path!r}: {type(error).__name__}: {error.strerror or error}")
    return data, None
