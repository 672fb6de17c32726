"""`python -m digitrec` is the `digitrec` command."""

import sys

from digitrec.cli import main

sys.exit(main())
