"""`python -m schoolgate.cli`: the `schoolgate` command."""

import sys

from . import main

sys.exit(main())
