"""Serving the registry's models: the model server, rollouts and the prediction log."""
