"""What produced a model: package versions and fingerprints, written next to every saved model."""
import hashlib
import json
import platform
from typing import Any, Dict, Iterable


def package_versions() -> Dict[str, str]:
    """Versions of Python and of the packages that shape a model's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("rasa-kd", "rasa", "tensorflow", "tensorflow-text", "transformers", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def fingerprint(parts: Iterable[Any]) -> str:
    """A short sha256 over JSON-serialisable parts (file checksums, labels, settings)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:16]
