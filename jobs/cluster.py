"""Spark job: the cluster stage of the M-learner (a thin wrapper over `mlearner cluster`).

Run with `spark-submit jobs/cluster.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["cluster", *sys.argv[1:]]))
