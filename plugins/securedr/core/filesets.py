"""File sets: where each backed-up file's envelope lives, what the manifest records about it,
and how a restore writes it back without ever exposing unverified plaintext.

A file set's files are stored one SecureDR envelope per file (``docs/envelope-format.md``) in
the evidence bucket under ``<prefix>/file-sets/<plan>/<run token>/<set>/<path digest>.sdr``.
The key is a pure function of plan, run and relative path, so a retried task finds what an
earlier try stored and never writes a second copy; the file name itself stays out of the key
(it is recorded only in the signed, SSE-KMS manifest).

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from securedr.core import envelope
from securedr.core.manifest import run_token
from securedr.core.plan import FileSet

#: Suffix of every envelope object.
ENVELOPE_SUFFIX = ".sdr"
#: Folder under the evidence prefix that holds file-set envelopes.
FILE_SETS_FOLDER = "file-sets"

#: The manifest entry fields of one file, all required at restore time.
FILE_FIELDS = ("path", "size", "sha256", "file_id", "object_key", "version_id")


class FileSetError(ValueError):
    """A file-set entry or object is not what the signed manifest says; nothing was written."""


def file_set_prefix(evidence_prefix: str, plan: str, run_id: str, name: str) -> str:
    """Key prefix of one file set's envelopes for one run (ends with ``/``)."""
    parts = [evidence_prefix.strip("/"), FILE_SETS_FOLDER, plan, run_token(run_id), name]
    return "/".join(p for p in parts if p) + "/"


def object_key(evidence_prefix: str, plan: str, run_id: str, name: str, path: str) -> str:
    """The envelope key of ``path`` (relative, POSIX) in file set ``name`` for ``run_id``."""
    digest = hashlib.sha256(f"{name}\0{path}".encode()).hexdigest()[:40]
    return file_set_prefix(evidence_prefix, plan, run_id, name) + digest + ENVELOPE_SUFFIX


def safe_relative_path(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that cannot leave the directory it is joined to.

    Raises :class:`FileSetError` for absolute paths, ``..``, empty parts or NUL bytes.
    """
    if not path or "\0" in path or "\\" in path:
        raise FileSetError(f"unsafe file path {path!r} in the manifest")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise FileSetError(f"unsafe file path {path!r} in the manifest")
    return pure


@dataclass(frozen=True)
class BackedUpFile:
    """What the manifest records about one file: enough to find, decrypt and check it."""

    path: str  #: relative to the file set's source, POSIX separators
    size: int  #: plaintext bytes
    sha256: str  #: plaintext SHA-256, lowercase hex
    file_id: str  #: the envelope's FILE_ID, lowercase hex
    object_key: str
    version_id: str | None
    ciphertext_size: int

    @classmethod
    def stored(
        cls,
        path: str,
        object_key: str,
        version_id: str | None,
        result: envelope.EncryptResult | envelope.DecryptResult,
    ) -> BackedUpFile:
        """The record of ``path`` stored as ``object_key``, from what its envelope holds."""
        return cls(
            path=path,
            size=result.plaintext_size,
            sha256=result.plaintext_sha256,
            file_id=result.file_id,
            object_key=object_key,
            version_id=version_id,
            ciphertext_size=result.ciphertext_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileSetResult:
    """The outcome of backing up one file set in one run."""

    name: str
    source: str
    source_region: str | None
    kms_key_arn: str
    recovery_key_id: str
    files: list[BackedUpFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reused: int = 0  #: files a retried task found already stored

    @classmethod
    def for_set(
        cls, file_set: FileSet, *, kms_key_arn: str, recovery_public_key: str
    ) -> FileSetResult:
        """An empty result for ``file_set``, its files wrapped to these two keys."""
        return cls(
            name=file_set.name,
            source=file_set.source,
            source_region=file_set.region,
            kms_key_arn=kms_key_arn,
            recovery_key_id=envelope.recovery_key_id(recovery_public_key),
        )

    @property
    def succeeded(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``file_sets`` entry (files sorted by path, so equal runs match)."""
        files = sorted(self.files, key=lambda f: f.path)
        return {
            "name": self.name,
            "source": self.source,
            "source_region": self.source_region,
            "kms_key_arn": self.kms_key_arn,
            "recovery_key_id": self.recovery_key_id,
            "succeeded": self.succeeded,
            "problems": list(self.problems),
            "file_count": len(files),
            "total_size": sum(f.size for f in files),
            "reused": self.reused,
            "files": [f.to_dict() for f in files],
        }


def check_file_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest file entry, every field present and well-formed, else :class:`FileSetError`."""
    missing = [f for f in FILE_FIELDS if f not in entry]
    if missing:
        raise FileSetError(f"manifest file entry lacks {', '.join(missing)}")
    safe_relative_path(str(entry["path"]))
    for name in ("sha256", "file_id"):
        value = str(entry[name])
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise FileSetError(
                f"manifest file entry {entry['path']!r}: {name} is not 64 hex digits"
            )
    return dict(entry)


def check_header(header: envelope.Header, entry: Mapping[str, Any], kms_key_arn: str) -> None:
    """Refuse an object whose (not yet authenticated) header cannot be the manifest's file.

    Checked before asking KMS for anything: the file id must be the manifest's, and the data key
    must be wrapped by exactly the plan's DR key. The decrypt then authenticates the header.
    """
    if header.file_id_hex != entry["file_id"]:
        raise FileSetError(
            f"{entry['path']}: object {entry['object_key']} holds file id "
            f"{header.file_id_hex[:16]}..., the signed manifest expects "
            f"{entry['file_id'][:16]}...; it is another file's envelope (swapped or replaced "
            "object). Nothing was written"
        )
    if header.kms_key_arn != kms_key_arn:
        raise FileSetError(
            f"{entry['path']}: object {entry['object_key']} is wrapped by KMS key "
            f"{header.kms_key_arn}, not the plan's DR key {kms_key_arn}. Nothing was written"
        )


def failed_file_sets(file_sets: Iterable[Mapping[str, Any]]) -> list[str]:
    """``name: problem`` for every file set that did not back up completely."""
    return [
        f"{s.get('name')}: {'; '.join(s.get('problems') or ['failed'])}"
        for s in file_sets
        if not s.get("succeeded")
    ]


def summarize(file_sets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per set name, source, counts and problems, without the per-file list (for reports)."""
    return [
        {
            "name": s.get("name"),
            "source": s.get("source"),
            "file_count": s.get("file_count", 0),
            "total_size": s.get("total_size", 0),
            "succeeded": bool(s.get("succeeded")),
            "problems": list(s.get("problems") or []),
        }
        for s in file_sets
    ]
