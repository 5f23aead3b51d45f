"""A challenger built to fail: it raises on the rows whose first feature is above a threshold
(pickled by value, so the server loads it without this module on its path)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Flaky(ClassifierMixin, BaseEstimator):
    def __init__(self, model=None, threshold: float = 0.8):
        self.model, self.threshold = model, threshold

    def fit(self, X, y):  # noqa: ARG002 - scikit-learn's signature; the wrapped model is fitted
        self.classes_ = self.model.classes_
        return self

    def _check(self, X):
        values = np.asarray(X, dtype=float)
        if (values[:, 0] > self.threshold).any():
            raise ValueError(f"flaky: x0 above {self.threshold}")
        return values

    def predict(self, X):
        return self.model.predict(self._check(X))

    def predict_proba(self, X):
        return self.model.predict_proba(self._check(X))
