"""Spark job: the calibrate stage of the M-learner (a thin wrapper over `mlearner calibrate`).

Run with `spark-submit jobs/calibrate.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
