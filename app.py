"""Crab Studio app: ``python app.py`` serves crab-tiny on http://127.0.0.1:7860 (see ``--help``)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
