"""Data versioning and lineage: step files under DVC, `dvc.yaml` export, push/pull, lineage.

Nothing here imports DVC or MLflow at module level: `import cellops` stays fast. DVC is driven
through its command line (`python -m dvc`), and its Python API only where the command line has
no equivalent (the remote's filesystem, for the step cache in push and pull).
"""
