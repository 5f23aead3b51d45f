"""Validate KServe manifests against the `kserve` package's generated OpenAPI models.

Run by tests/test_export.py with this venv's python and a folder holding `kserve` and
`kubernetes` installed with --no-deps (`import kserve` would start pulling its model server's
pinned dependencies): only the packages' model modules are loaded, under stub parent packages.

    python tests/kserve_validate.py TARGET MANIFEST.yaml...   -> JSON {path: [problems]}

A manifest is walked against each model's `openapi_types` and `attribute_map` (unknown fields,
wrong types), then deserialized with kserve's own ApiClient (the models' setters refuse a
missing required field). kserve's models name the Kubernetes types (V1Container, V1ObjectMeta,
...) that live in the `kubernetes` client, so those are added to `kserve.models` first, as the
KServe SDK expects them to be importable.
"""

from __future__ import annotations

import json
import sys
import types


def load(target: str):
    sys.path.insert(0, target)
    for package in ("kserve", "kubernetes"):
        stub = types.ModuleType(package)
        stub.__path__ = [f"{target}/{package}"]
        sys.modules[package] = stub
    import kserve.models as kserve_models
    import kubernetes.client.models as kube_models
    from kserve.api_client import ApiClient

    for name in dir(kube_models):
        if name.startswith("V1") and not hasattr(kserve_models, name):
            setattr(kserve_models, name, getattr(kube_models, name))
    return kserve_models, ApiClient


PRIMITIVES = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "date": str,
    "datetime": str,
}


def walk(models, value, kind: str, path: str, problems: list[str]) -> None:
    if value is None:
        return
    if kind.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{path}: a list ({kind}) expected, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            walk(models, item, kind[5:-1], f"{path}[{i}]", problems)
        return
    if kind.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{path}: a mapping ({kind}) expected, got {type(value).__name__}")
            return
        inner = kind[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            walk(models, item, inner, f"{path}.{key}", problems)
        return
    if kind == "object":
        return
    if kind in PRIMITIVES:
        wanted = PRIMITIVES[kind]
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, wanted):
            problems.append(f"{path}: {kind} expected, got {value!r}")
        return
    klass = getattr(models, kind, None)
    if klass is None:
        problems.append(f"{path}: the schema names {kind}, unknown to the models")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: an object ({kind}) expected, got {type(value).__name__}")
        return
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    for key, item in value.items():
        if key not in by_key:
            problems.append(f"{path}.{key}: no such field in {kind}")
            continue
        walk(models, item, klass.openapi_types[by_key[key]], f"{path}.{key}", problems)


class _Response:
    def __init__(self, data: str):
        self.data = data


def validate(models, api_client, document: dict) -> list[str]:
    problems: list[str] = []
    if document.get("apiVersion") != "serving.kserve.io/v1beta1":
        problems.append(
            f"apiVersion is {document.get('apiVersion')!r}, not serving.kserve.io/v1beta1"
        )
    if document.get("kind") != "InferenceService":
        problems.append(f"kind is {document.get('kind')!r}, not InferenceService")
    walk(models, document, "V1beta1InferenceService", "$", problems)
    if not problems:
        try:
            api_client().deserialize(_Response(json.dumps(document)), "V1beta1InferenceService")
        except Exception as exc:  # a setter refused a value (a required field missing, ...)
            problems.append(f"kserve's ApiClient refused it: {type(exc).__name__}: {exc}")
    return problems


def main() -> None:
    import yaml

    models, api_client = load(sys.argv[1])
    report = {}
    for path in sys.argv[2:]:
        with open(path) as fh:
            report[path] = validate(models, api_client, yaml.safe_load(fh))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
