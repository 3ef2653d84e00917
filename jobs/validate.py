"""Spark job: the validate stage of the M-learner (a thin wrapper over `mlearner validate`).

Run with `spark-submit jobs/validate.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
