"""``python -m ebir_fast``: the ``ebir-fast`` command."""

import sys

from ebir_fast.cli import main

sys.exit(main())
