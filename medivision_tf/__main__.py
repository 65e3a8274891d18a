"""`python -m medivision_tf` runs the `medivision` command."""

import sys

from medivision_tf.cli import main

sys.exit(main())
