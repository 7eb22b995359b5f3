"""``python -m benchmarks``: the same as ``spleen-course bench``."""

import sys

from benchmarks.runner import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks"))
