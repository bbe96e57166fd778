"""Run the command-line interface: `python -m watchdog --help`."""

import sys

from watchdog.cli import main

sys.exit(main())
