"""``python -m app.cli ...``: the same as ``thrifty ...``."""

import sys

from app.cli import main

sys.exit(main())
