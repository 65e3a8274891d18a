"""XLA settings for the tests' JAX processes: compile faster on a CPU.

On a CPU, XLA spends most of a JAX test process's time compiling (each
network's first run, and every weight initializer's shape when a network is
built: 35 s for EfficientNetB0 alone). Two flags cut that, measured on the
CI's kind of 2-core machine (EfficientNetB0 built on JAX, three runs each):

- `--xla_backend_optimization_level=0`: LLVM's optimisation level 0, about
  twice as fast to compile;
- `--xla_cpu_use_fusion_emitters=false`: XLA's older code generator for
  fused ops, a further 40-50 % less compile time (30 s -> 14 s, 19 s -> 11 s).

The tests check values (to 1e-4 against TensorFlow), not speed, and neither
flag changes float semantics (no fast-math either way). Both exist in jaxlib
0.10.2 (what the test extra installs here); XLA stops at start-up on a flag it
does not know ("Unknown flags in XLA_FLAGS"), so a jaxlib that drops one fails
the JAX tests at once with that message: remove the flag here then.

Not a test module (pytest collects `test_*.py` only).
"""

import os

FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def fast_compile_env(environ=None):
    """`environ` (default `os.environ`) with `FLAGS` added to `XLA_FLAGS`."""
    environ = dict(os.environ if environ is None else environ)
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", ""), *FLAGS]).strip()
    return environ
