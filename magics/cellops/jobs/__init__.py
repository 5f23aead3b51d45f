"""Notebooks as jobs: Papermill executions with parameters checked, a manifest, retries."""
