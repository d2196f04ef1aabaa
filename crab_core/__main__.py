"""``python -m crab_core <command>``."""

import sys

from .cli import main

sys.exit(main())
