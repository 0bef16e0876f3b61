"""`python -m berth.registry.server [serve] --addr HOST:PORT --root DIR` or `... gc --root DIR`."""

import sys

from .main import main

sys.exit(main())
