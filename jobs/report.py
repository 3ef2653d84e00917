"""Spark job: the report stage of the M-learner (a thin wrapper over `mlearner report`).

Run with `spark-submit jobs/report.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
