"""Spark job: every stage of the M-learner in order (a thin wrapper over `mlearner run`).

Run with `spark-submit jobs/run_all.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
