#!/bin/bash
# Cluster init script of the classic job (resources/mlearner_job.yml): runs on the driver and on
# every worker before the job's libraries are installed. It installs the Dask release this project
# is tested with (the versions are those of constraints.txt; tests/integration/test_deploy.py
# checks that they agree) and starts Dask: a scheduler on the driver (port 8786) and one worker on
# every Spark worker (`dask databricks run`, package dask-databricks). The job then connects with
# compute.dask.scheduler_address=databricks and checks that client, scheduler and workers run the
# same dask/distributed and the same mlearner-dist (backends/dask_cluster.py).
set -euo pipefail
export PATH=/databricks/python/bin:$PATH   # dask-databricks starts `dask scheduler` / `dask worker`
/databricks/python/bin/pip install --no-input \
  "dask[dataframe]==2026.8.0" \
  "distributed==2026.8.0" \
  "dask-databricks==0.3.2"
dask databricks run
