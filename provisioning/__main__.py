"""``python -m provisioning [--dry-run] [--prune]``; see provisioning.cli."""

import sys

from provisioning.cli import main

sys.exit(main())
