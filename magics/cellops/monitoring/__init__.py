"""Drift detection: Evidently's familiar report, and a native engine that needs only a profile.

`cellops.drift(reference, current)` compares two data sets column by column; `profile` keeps
what the native engine needs of the reference; `history` records each check as an MLflow run;
`monitor` closes the loop (drift -> retraining job -> gate).
"""
