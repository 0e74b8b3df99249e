"""Versioned models on disk: one folder per device and metric, one file per
training, with its metadata beside it.

    var/models/<device>/<metric>/v0003.joblib   the fitted detector
    var/models/<device>/<metric>/v0003.json     training range, features, figures

A model file holds the detector's name and version, the registry format and
the detector's state. Loading refuses, with a message saying what to do, a
file that is corrupt, one written by another registry format, or one whose
detector has changed shape since (``Detector.version``). The SHA-256 of each
file is in its metadata and checked before the file is read.

Model files are pickles (joblib): whoever can write the models folder can run
code in the services that load it. Keep it writable by the platform's own
user only (docs/anomaly.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from models.base import Detector, ModelError

FORMAT = 1
_VERSION = re.compile(r"^v(\d{4,})\.joblib$")
_PART = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Saved:
    """A model on disk: where, which version, and its metadata."""

    device: str
    metric: str
    version: int
    path: Path
    meta: dict[str, Any]


class Registry:
    """The models folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, device: str, metric: str) -> Path:
        for part in (device, metric):
            if not _PART.match(part):
                raise ModelError(f"{part!r} cannot name a model (use [A-Za-z0-9_.-], 1-64)")
        return self.root / device / metric

    def versions(self, device: str, metric: str) -> list[int]:
        """The saved versions of a device's metric, oldest first."""
        folder = self._folder(device, metric)
        if not folder.is_dir():
            return []
        found = (_VERSION.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, device: str, metric: str, detector: Detector, meta: dict[str, Any]) -> Saved:
        """Write a new version (atomically: a crash leaves the old one in place)."""
        folder = self._folder(device, metric)
        folder.mkdir(parents=True, exist_ok=True)
        version = max(self.versions(device, metric), default=0) + 1
        path = folder / f"v{version:04d}.joblib"
        doc = {
            "format": FORMAT,
            "detector": detector.name,
            "detector_version": detector.version,
            "state": detector.state(),
        }
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                joblib.dump(doc, fh, compress=3)
                fh.flush()
                os.fsync(fh.fileno())
            digest = _sha256(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        full = {
            **meta,
            "device": device,
            "metric": metric,
            "version": version,
            "detector": detector.name,
            "detector_version": detector.version,
            "sha256": digest,
        }
        path.with_suffix(".json").write_text(json.dumps(full, indent=2, default=str) + "\n")
        return Saved(device, metric, version, path, full)

    def latest(self, device: str, metric: str) -> Saved | None:
        """The newest version, or None when the metric has no model."""
        versions = self.versions(device, metric)
        if not versions:
            return None
        return self._saved(device, metric, versions[-1])

    def _saved(self, device: str, metric: str, version: int) -> Saved:
        path = self._folder(device, metric) / f"v{version:04d}.joblib"
        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"model {path}: its metadata {meta_path.name} is unreadable ({exc})"
            ) from None
        return Saved(device, metric, version, path, meta)

    def load(self, saved: Saved) -> Detector:
        """The fitted detector of ``saved``; :class:`ModelError` when it cannot be used."""
        path = saved.path
        retrain = f"retrain it: campus model train --devices {saved.device}"
        expected = saved.meta.get("sha256")
        if expected is not None and _sha256(path) != expected:
            raise ModelError(f"model {path} is corrupt (its checksum does not match); {retrain}")
        try:
            doc = joblib.load(path)
        except Exception as exc:
            raise ModelError(f"model {path} is corrupt ({type(exc).__name__}); {retrain}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ModelError(
                f"model {path} has registry format {got!r}; this platform reads {FORMAT}; {retrain}"
            )
        from models.detectors import DETECTORS  # scikit-learn: only once a model is loaded

        cls = DETECTORS.get(str(doc.get("detector")))
        if cls is None:
            raise ModelError(f"model {path} names an unknown detector {doc.get('detector')!r}")
        if doc.get("detector_version") != cls.version:
            raise ModelError(
                f"model {path} was made by detector {cls.name!r} version "
                f"{doc.get('detector_version')}; this platform reads version {cls.version}; "
                f"{retrain}"
            )
        try:
            return cls.from_state(doc["state"])
        except Exception as exc:
            raise ModelError(f"model {path} cannot be rebuilt ({exc!r}); {retrain}") from None

    def all_latest(self) -> list[Saved]:
        """The newest model of every device and metric."""
        out: list[Saved] = []
        if not self.root.is_dir():
            return out
        for device in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for metric in sorted(p for p in device.iterdir() if p.is_dir()):
                saved = self.latest(device.name, metric.name)
                if saved is not None:
                    out.append(saved)
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
