"""Side-by-side comparison of fasttb, torch's and tensorboardX's SummaryWriter in one run.

Same as ``python -m fasttb bench``; see fasttb/cli/bench.py for what is measured.
Usage: python benchmarks/compare.py [--quick] [--json PATH]
"""

import sys

from fasttb.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
