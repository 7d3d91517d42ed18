"""`python -m orchestrator.harness <run_dir>`: see orchestrator/harness/run.py."""

import sys

from orchestrator.harness.run import main

if __name__ == "__main__":
    sys.exit(main())
