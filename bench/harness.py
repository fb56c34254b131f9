"""Entry point of the benchmark suite (the ``fgr_bench`` package beside it);
``--help`` lists the options."""

import sys

from fgr_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
