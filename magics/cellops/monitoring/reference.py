"""The reference profile stored with each registered model version, and how to read it back.

`register_model(..., reference=frame_or_path)` profiles the training data and writes the
profile into the logged model's folder before the upload (`PROFILE_FILE`), and tags the version
`cellops.reference_profile = "1"`. A drift check then needs only that file: it is downloaded
alone, never the model.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._process import environment
from ..errors import CellopsUsageError

if TYPE_CHECKING:
    from ..registry.store import RegistryStore
    from .profile import ReferenceProfile

TAG_PROFILE = "cellops.reference_profile"
DEFAULT_ALIAS = "champion"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$")


class NoReferenceProfileError(CellopsUsageError):
    """The model version was registered without a reference profile."""


@dataclass(frozen=True)
class ModelRef:
    """A model version named by number or by alias."""

    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else self.label

    @property
    def label(self) -> str:
        return f"models:/{self.name}@{self.alias or DEFAULT_ALIAS}"


def parse_model_uri(uri: str) -> ModelRef:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
    match = _URI.match(uri.strip())
    if not match:
        raise CellopsUsageError(
            f"{uri!r} is not a model URI cellops can read; use models:/NAME/VERSION or "
            "models:/NAME@ALIAS, for example models:/fraud@champion"
        )
    return ModelRef(match["name"], match["version"], match["alias"])


def is_model_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("models:/")


def profile_for_registration(reference: Any) -> ReferenceProfile:
    """The profile of `reference` (a DataFrame, or a Parquet/CSV path), or a usage error."""
    from .profile import ReferenceProfile, build_profile

    if isinstance(reference, ReferenceProfile):
        return reference
    if isinstance(reference, (str, Path)):
        path = Path(reference)
        if not path.is_file():
            raise CellopsUsageError(
                f"register_model: reference {str(reference)!r} is not a file; pass the training "
                "data as a DataFrame, or the path of a Parquet or CSV file"
            )
    elif not (hasattr(reference, "columns") and hasattr(reference, "iloc")):
        raise CellopsUsageError(
            f"register_model: reference must be a DataFrame or a Parquet/CSV path, not a "
            f"{type(reference).__name__}; for example reference=train[['amount', 'country']]"
        )
    return build_profile(reference)


@dataclass(frozen=True)
class ReferenceAttachment:
    """The drift reference profile as the registry stores it beside a model version."""

    profile: ReferenceProfile
    tag: str = TAG_PROFILE

    def write_into(self, model_folder: str) -> None:
        write_profile(self.profile, model_folder)


def reference_attachments(reference: Any) -> list[ReferenceAttachment]:
    """What `register_model(..., reference=...)` stores: the training data's profile (raises
    on a bad reference, before anything is registered)."""
    if reference is None:
        return []
    return [ReferenceAttachment(profile_for_registration(reference))]


def write_profile(profile: ReferenceProfile, model_folder: str | Path) -> Path:
    """Write the profile into the (local, not yet uploaded) model folder."""
    from .profile import PROFILE_FILE

    path = Path(model_folder) / PROFILE_FILE
    profile.save(path)
    return path


def resolve(store: RegistryStore, ref: ModelRef) -> Any:
    """The `ModelVersion` `ref` names, or a usage error saying what exists."""
    from ..registry.store import alias_version, is_missing, require_model

    require_model(store, ref.name)
    version = ref.version
    if version is None:
        alias = ref.alias or DEFAULT_ALIAS
        version = store.call(lambda client: alias_version(client, ref.name, alias))
        if version is None:
            raise CellopsUsageError(
                f"model {ref.name!r} has no @{alias}: promote a version first "
                f"(cellops promote {ref.name}), or name one with --version V"
            )

    def read(client: Any) -> tuple[Any, list[int]]:
        try:
            return client.get_model_version(ref.name, str(version)), []
        except Exception as exc:
            if not is_missing(exc):
                raise
        found = client.search_model_versions(f"name = '{ref.name}'")
        return None, sorted((int(v.version) for v in found), reverse=True)

    found, versions = store.call(read)
    if found is None:
        raise CellopsUsageError(
            f"model {ref.name!r} has no version {version}; its versions: "
            f"{', '.join(map(str, versions)) or 'none'}"
        )
    return found


def load_reference_profile(
    store_or_client: Any, name: str, version_or_alias: str | int | None = None
) -> ReferenceProfile:
    """The profile stored with `name` at a version (`"3"`, `3`) or an alias (`"champion"`)."""
    store = _as_store(store_or_client)
    ref = _ref(name, version_or_alias)
    return load_version_profile(store, resolve(store, ref))


def load_version_profile(store: RegistryStore, version: Any) -> ReferenceProfile:
    """The profile stored with the `ModelVersion` `version` (downloads that one file)."""
    import mlflow.artifacts

    from .profile import PROFILE_FILE, ReferenceProfile

    label = f"{version.name} version {version.version}"
    missing = NoReferenceProfileError(
        f"{label} has no reference profile: it was registered before profiles were stored, or "
        "without training data; re-register it with cellops.register_model(model, "
        f"{version.name!r}, X_sample, reference=training_frame) (or compare against raw data: "
        "cellops drift REFERENCE_PATH CURRENT_PATH)"
    )
    if (version.tags or {}).get(TAG_PROFILE) != "1":
        raise missing
    location = _artifact_location(store, version)
    uri = f"{location.rstrip('/')}/{PROFILE_FILE}"
    with tempfile.TemporaryDirectory(prefix="cellops-profile-") as folder:
        try:
            with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                path = store.call(
                    lambda client: mlflow.artifacts.download_artifacts(  # noqa: ARG005 - store.call passes the client
                        artifact_uri=uri, dst_path=folder, tracking_uri=store.uri
                    )
                )
        except Exception as exc:
            if _is_missing_file(exc):  # the tag says it was stored: its files are gone
                raise _files_missing(version, uri) from None
            raise
        return ReferenceProfile.load(path)


def _is_missing_file(exc: BaseException) -> bool:
    from ..registry.scoring import is_missing_files

    return is_missing_files(exc) or "no such artifact" in str(exc).lower()


def _files_missing(version: Any, uri: str) -> Exception:
    """The registry's named error for a version whose files are gone, for a drift check."""
    import urllib.parse
    import urllib.request

    from ..registry.scoring import missing_files_error

    where = uri
    if uri.startswith("file:"):
        where = urllib.request.url2pathname(urllib.parse.urlparse(uri).path)
    return missing_files_error(version.name, str(version.version), where, reference=True)


def model_reference(reference: Any, columns: list[str] | None) -> tuple[Any, list[str] | None]:
    """A `models:/...` reference as its stored profile, and the columns to check: the profiled
    ones unless given (the current data may hold more: ids, the label). Else as given."""
    if not is_model_uri(reference):
        return reference, columns
    ref = parse_model_uri(reference)
    profile = load_reference_profile(None, ref.name, ref.version or ref.alias)
    return profile, columns if columns is not None else list(profile.columns)


def _artifact_location(store: RegistryStore, version: Any) -> str:
    """Where the logged model's files are. cellops registers the version with that location as
    its `source`; a version registered elsewhere may have `models:/<model_id>` instead."""
    source = str(version.source or "")
    model_id = getattr(version, "model_id", None)
    if model_id and (not source or source.startswith("models:/")):
        return store.call(lambda client: client.get_logged_model(model_id).artifact_location)
    return source


def _ref(name: str, version_or_alias: str | int | None) -> ModelRef:
    if is_model_uri(name):
        return parse_model_uri(name)
    if version_or_alias is None:
        return ModelRef(name, alias=DEFAULT_ALIAS)
    text = str(version_or_alias)
    return ModelRef(name, version=text) if text.isdigit() else ModelRef(name, alias=text)


def _as_store(store_or_client: Any) -> RegistryStore:
    """A `RegistryStore` (calls retried on "database is locked") for a store or a client."""
    import dataclasses

    from ..config import load_settings
    from ..registry.store import RegistryStore, open_store

    if store_or_client is None:
        return open_store()
    if isinstance(store_or_client, RegistryStore):
        return store_or_client
    settings = load_settings()
    uri = getattr(getattr(store_or_client, "_tracking_client", None), "tracking_uri", None)
    if uri and uri != settings.tracking_uri:
        settings = dataclasses.replace(settings, tracking_uri=uri)
    return RegistryStore(settings, client=store_or_client)
