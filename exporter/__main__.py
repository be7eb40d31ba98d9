"""`python -m exporter` runs the same command line as `sccm-package-exporter`."""

import sys

from exporter.cli import main

sys.exit(main())
