"""``python -m ticker`` is the ``ticker`` command."""

import sys

from ticker.cli import main

sys.exit(main())
