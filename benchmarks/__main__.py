"""``python -m benchmarks``: measure the course on this machine (``make bench`` runs it)."""

import sys

from benchmarks.runner import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks"))
