"""``python -m runnerkit.master [-C FILE]... [--var-dir DIR]``: run a master."""

import sys

from runnerkit.master.supervisor import main

sys.exit(main())
