"""Keeps TensorFlow's native log lines off the terminal unless `--verbose`.

TensorFlow's C++ runtime writes lines such as `I0000 ... cudart_stub.cc:31]
Could not find cuda drivers`, `oneDNN custom operations are on` and a red
`E0000 ... cuInit` straight to file descriptor 2 before its logging is set
up, so `TF_CPP_MIN_LOG_LEVEL` does not hide them (measured with TF 2.21).
Hence this filter: file descriptor 2 becomes a pipe whose reader thread
passes everything to the real stderr except those native log lines; Python's
own TensorFlow/Keras warnings are silenced at their source.

Example:

```python
from medivision_tf.cli import _quiet

_quiet.install()     # before TensorFlow is imported
```
"""

import atexit
import logging
import os
import re
import select
import sys
import threading
import warnings

# Native (absl / TSL) log lines: "I0000 00:00:1796117109.170848    4549 port.cc:153] ..."
_NATIVE_LOG = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-/]+:\d+\]")
_NATIVE_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called",
    b"To enable the following instructions:",
    b"TF-TRT Warning",
)


def is_native_log(line):
    """Whether a line (bytes) is one of TensorFlow's native log lines."""
    return bool(_NATIVE_LOG.match(line)) or line.startswith(_NATIVE_NOTICES)


def _pump(read_fd, real_fd):
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], 0.2)
        if not ready:
            if pending:  # a prompt or progress bar without a newline yet
                os.write(real_fd, pending)
                pending = b""
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_native_log(line))
        if b"\r" in pending:  # progress bars redraw with \r: show them now
            out += pending
            pending = b""
        if out:
            os.write(real_fd, out)
    if pending and not is_native_log(pending):
        os.write(real_fd, pending)


def install():
    """Filters TensorFlow's native log lines out of stderr for this process.

    Also sets `TF_CPP_MIN_LOG_LEVEL=3` (for the lines that honour it) and
    silences the Python warnings TensorFlow and Keras emit. Call it before
    TensorFlow is imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tf_keras_vis|absl)(\.|$)")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        sys.stderr.flush()
        real_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no usable descriptor 2 (e.g. closed): nothing to filter
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_pump, args=(read_fd, real_fd), daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real_fd, 2)  # closes the pipe's last writer: the reader sees EOF
        thread.join(timeout=2)

    atexit.register(restore)
