"""A registered version loaded for serving: its files, its signature, its predict, warmed up.

A scikit-learn version saved by cellops (the `sklearn` flavor, cloudpickle or pickle) is read
straight from its folder: `MLmodel` for the flavor and signature, then the pickle; MLflow is
not imported, which keeps the server's start-up short. Anything else (another serialization,
a pyfunc model) is loaded with `mlflow.pyfunc.load_model`, and its predict is MLflow's.

When every input column is a number and the estimator was fitted on the signature's columns in
order (or on an array), the rows are passed as one float64 matrix instead of a DataFrame; the
warm-up checks the estimator accepts it, else the DataFrame is used.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .schema import Batch, InputSchema, parse_json
from .source import VersionRef

WARMUP_CALLS = 3
# scikit-learn warns on every call when an estimator fitted on a DataFrame gets an array: the
# matrix path hands it the signature's columns in their order, which is what it checks
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@dataclass
class ServedModel:
    ref: VersionRef
    flavor: str  # sklearn | pyfunc
    model: Any
    schema: InputSchema | None
    folder: str
    classes: list | None = None  # a classifier's classes, in predict_proba's column order
    matrix: bool = False  # predict on the float64 matrix (see the module's docstring)
    warmed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    _temp: Any = None  # the download folder of a remote artifact store, kept while served

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def name(self) -> str:
        return self.ref.name

    def predict(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (one per row) and, for a classifier, the class probabilities (rows x
        classes): the answer carries them when asked, the log the predicted class's."""
        if self.flavor == "pyfunc":
            return _flat(self.model.predict(batch.frame())), None
        if not self.matrix:
            rows = batch.frame()
        elif batch.matrix is not None:
            rows = batch.matrix
        else:
            rows = np.column_stack([batch.columns[n] for n in batch.names]).astype(np.float64)
        predictions = _flat(self.model.predict(rows))
        proba = None if self.classes is None else np.asarray(self.model.predict_proba(rows))
        return predictions, proba


def _flat(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    return array


def local_folder(ref: VersionRef, tracking_uri: str) -> tuple[str, Any]:
    """The version's folder on this machine (downloaded for a remote artifact store)."""
    from ..registry.scoring import missing_files_error

    location = ref.location
    if location.startswith("file:") or location.startswith("/"):
        path = urllib.request.url2pathname(urllib.parse.urlparse(location).path)
        if not (Path(path) / "MLmodel").is_file():
            raise missing_files_error(ref.name, ref.version, path)
        return path, None
    import mlflow.artifacts

    from .._process import environment

    temp = tempfile.TemporaryDirectory(prefix="cellops-serve-")
    try:
        with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=temp.name, tracking_uri=tracking_uri
            )
    except Exception as exc:
        temp.cleanup()
        from ..registry.scoring import is_missing_files

        if not is_missing_files(exc):
            raise
        raise missing_files_error(ref.name, ref.version, location) from None
    return path, temp


def load(ref: VersionRef, tracking_uri: str) -> ServedModel:
    """Load and warm up the version `ref` points at."""
    import yaml

    folder, temp = local_folder(ref, tracking_uri)
    try:
        with open(Path(folder) / "MLmodel") as fh:
            info = yaml.safe_load(fh) or {}
        schema = InputSchema.from_mlmodel(info.get("signature"))
        flavors = info.get("flavors") or {}
        sklearn = flavors.get("sklearn") or {}
        if sklearn.get("serialization_format") in ("cloudpickle", "pickle"):
            model, flavor = _unpickle(Path(folder) / sklearn["pickled_model"]), "sklearn"
        elif sklearn:
            model, flavor = _with_mlflow(folder, "sklearn"), "sklearn"
        else:
            model, flavor = _with_mlflow(folder, "pyfunc"), "pyfunc"
    except FileNotFoundError as exc:
        from ..registry.scoring import missing_files_error

        raise missing_files_error(ref.name, ref.version, str(exc.filename or folder)) from None
    served = ServedModel(ref, flavor, model, schema, folder, _temp=temp)
    if flavor == "sklearn" and hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        served.classes = list(np.asarray(model.classes_).tolist())
    warm_up(served, info)
    return served


def _unpickle(path: Path) -> Any:
    """The estimator cellops saved (cloudpickle can read pickle's format too)."""
    import cloudpickle

    with open(path, "rb") as fh:
        return cloudpickle.load(fh)


def _with_mlflow(folder: str, flavor: str) -> Any:
    """MLflow 3.17 refuses to unpickle unless told to; these are the project's own models,
    as the gate loads them."""
    from .._process import environment

    with environment(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"):
        if flavor == "sklearn":
            import mlflow.sklearn

            return mlflow.sklearn.load_model(folder)
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(folder)


def example_batch(served: ServedModel, info: dict[str, Any]) -> Batch | None:
    """The version's input example (saved at registration), parsed as a request is."""
    import json

    saved = info.get("saved_input_example_info") or {}
    path = Path(served.folder) / saved.get("artifact_path", "input_example.json")
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        orient = saved.get("pandas_orient", "split")
        key = "dataframe_split" if orient == "split" else "dataframe_records"
        if isinstance(document, dict) and any(k in document for k in ("data", "columns")):
            document = {key: document}
        elif isinstance(document, list):
            document = {"dataframe_records" if document and isinstance(document[0], dict)
                        else "inputs": document}  # fmt: skip
        return parse_json(document, served.schema)[0]
    except Exception:
        return None


def warm_up(served: ServedModel, info: dict[str, Any]) -> None:
    """Predict the input example a few times (first calls are slow), and choose the matrix
    path when the estimator takes it."""
    batch = example_batch(served, info)
    if batch is None:
        served.notes.append("no input example to warm up on")
        return
    served.matrix = _takes_matrix(served, batch)
    started = time.perf_counter()
    try:
        for _ in range(WARMUP_CALLS):
            served.predict(batch)
    except Exception as exc:
        served.notes.append(f"the warm-up prediction failed ({type(exc).__name__}: {exc})")
    served.warmed_ms = (time.perf_counter() - started) * 1000 / WARMUP_CALLS


def _takes_matrix(served: ServedModel, batch: Batch) -> bool:
    schema = served.schema
    if served.flavor != "sklearn" or schema is None or batch.matrix is None:
        return False
    if schema.tensor_dtype:
        return True
    fitted = getattr(served.model, "feature_names_in_", None)
    if fitted is not None and list(fitted) != list(schema.names):
        return False
    with contextlib.suppress(Exception):
        served.model.predict(batch.matrix)
        return True
    return False
