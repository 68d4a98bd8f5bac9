"""`make demo`: the two-layer student–teacher comparison of the three maps (MATH.md §5).

    python experiments/student_teacher/demo.py [--out DIR]

Trains hyperbolic (β = 0.01), euclidean and power (L = 3, β = 0.01) students on five seeds
with the defaults of compare.py (under a minute on two CPU cores), prints the margin table and
the paths of the figures. Finished runs are kept in DIR/runs and skipped when rerun.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from student_teacher import compare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", default="results/student_teacher/two_layer")
    args = parser.parse_args()
    start = time.perf_counter()
    compare.main(["--depth", "2", "--seeds", "5", "--out", args.out])
    print(f"demo finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
