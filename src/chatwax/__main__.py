"""`python -m chatwax` is the `chatwax` command."""

import sys

from chatwax.cli import main

sys.exit(main())
