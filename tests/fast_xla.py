"""XLA settings for the tests' JAX processes: compile faster on a CPU.

On a CPU, XLA spends most of a JAX test process's time compiling (each
network's first run, and every weight initializer's shape when a network is
built: 35 s for EfficientNetB0 alone). Two flags cut that, measured on the
CI's kind of 2-core machine (EfficientNetB0 built on JAX, three runs each):

- `--xla_backend_optimization_level=0`: LLVM's optimisation level 0, about
  twice as fast to compile;
- `--xla_cpu_use_fusion_emitters=false`: XLA's older code generator for
  fused ops, a further 40-50 % less compile time (30 s -> 14 s, 19 s -> 11 s;
  the twelve backbone families of tests/backend_worker.py: 86 -> 64 CPU s).

The tests check values (to 1e-4 against TensorFlow), not speed. Neither flag
enables fast-math; another code generator may sum in another order, a
difference in the last bits, far inside 1e-4. XLA stops at start-up on a
flag it does not know ("Unknown flags in XLA_FLAGS"), and a jaxlib may drop
one: each flag is tried once in a small JAX process and left out if JAX
does not start with it.

Not a test module (pytest collects `test_*.py` only).
"""

import functools
import os
import subprocess
import sys

FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _starts_with(flags):
    """Whether a small JAX process starts with `XLA_FLAGS` set to `flags`."""
    probe = "import jax.numpy as jnp; jnp.zeros(2).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@functools.lru_cache(maxsize=None)
def supported_flags():
    """The `FLAGS` this machine's jaxlib starts with: all of them in one probe
    process when it starts (the usual case), else each tried alone."""
    if _starts_with(FLAGS):
        return FLAGS
    return tuple(flag for flag in FLAGS if _starts_with((flag,)))


def fast_compile_env(environ=None):
    """`environ` (default `os.environ`) with the supported `FLAGS` added to `XLA_FLAGS`."""
    environ = dict(os.environ if environ is None else environ)
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", ""), *supported_flags()]).strip()
    return environ
