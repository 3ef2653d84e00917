"""Spark job: the embed stage of the M-learner (a thin wrapper over `mlearner embed`).

Run with `spark-submit jobs/embed.py --config conf/FILE.yaml --output DIR`.
"""

import sys

from mlearner_dist.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
