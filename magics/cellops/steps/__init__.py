"""The `%%step` engine: a cell's names, its plan and key, restore or run, record, and the
status and reports of a notebook's steps."""
