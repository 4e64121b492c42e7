"""`python -m amft ...` is the `amft` command (handy under `accelerate launch -m amft`)."""

import sys

from amft.cli import main

sys.exit(main())
