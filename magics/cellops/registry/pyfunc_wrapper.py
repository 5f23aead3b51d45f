"""A pyfunc wrapper for a model that is not scikit-learn's but has `predict`.

cellops serializes this class by value (cloudpickle), so loading the model needs MLflow and
the model's own libraries, not cellops.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class PredictWrapper(mlflow.pyfunc.PythonModel):
    # The input schema is the signature cellops infers from X_sample, not type hints.
    _skip_type_hint_validation = True

    def __init__(self, model: Any):
        self.model = model

    def predict(self, context, model_input, params=None):  # noqa: ARG002 - MLflow's PythonModel.predict signature
        # no type hints: MLflow would try to read them as the input schema
        return self.model.predict(model_input)
