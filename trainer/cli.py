"""``adaptlog-train``: the trainer side's command line.

The trainer (pretraining, adapters, evaluation, the feedback service) is the subject of the next issues; until it
exists this command says so plainly rather than pretending.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptlog-train", description="Train and evaluate adaptlog models.")
    parser.parse_args(argv)
    print("adaptlog-train: no training commands yet (see the open issue 'Transfer-learned models')", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
