"""Spark job: the profile stage of the M-learner (a thin wrapper over `mlearner profile`).

Run with `spark-submit jobs/profile.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["profile", *sys.argv[1:]]))
