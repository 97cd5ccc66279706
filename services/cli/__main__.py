"""``python -m services.cli`` is the ``vidsearch`` command."""

import sys

from services.cli import main

sys.exit(main())
