"""Spark job: the effects stage of the M-learner (a thin wrapper over `mlearner effects`).

Run with `spark-submit jobs/effects.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["effects", *sys.argv[1:]]))
