"""The tracking store: the notebook's session run, the background tracker that writes to MLflow,
the store proxy a job's kernel writes through, and the reaper of runs whose owner died."""
