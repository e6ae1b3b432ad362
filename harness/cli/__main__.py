"""``python -m harness.cli``: the ``loopcall`` command."""

import sys

from harness.cli.main import main

sys.exit(main())
