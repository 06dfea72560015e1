"""``python -m udpio``: see udpio._cli."""

import sys

from udpio._cli import main

sys.exit(main())
