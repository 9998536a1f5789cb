"""`python -m pipeline_lib.cli`: the `workbench` command, for child processes that run it by interpreter."""

import sys

from pipeline_lib.cli.main import main

sys.exit(main())
