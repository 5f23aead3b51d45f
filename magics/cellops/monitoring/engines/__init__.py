"""Drift engines: cellops' native engine and the Evidently adapter."""
