"""A model folder as a processing job receives it: the artefacts themselves, or SageMaker's model.tar.gz."""

from __future__ import annotations

import tarfile
from pathlib import Path


def resolve_model_dir(model_dir: Path) -> Path:
    """Accept either the extracted artefacts or SageMaker's model.tar.gz."""
    if (model_dir / "model.json").is_file():
        return model_dir
    archive = model_dir / "model.tar.gz"
    if archive.is_file():
        target = model_dir / "extracted"
        target.mkdir(exist_ok=True)
        with tarfile.open(archive) as tar:
            safe_extract(tar, target)
        return target
    raise FileNotFoundError(f"no model.json or model.tar.gz in {model_dir}")


def safe_extract(tar: tarfile.TarFile, target: Path) -> None:
    """Extract regular files and folders only, never outside ``target``: the "data" filter where
    this Python has it (3.11.4+, 3.12+), the same checks by hand before (Debian 12 ships 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    root = target.resolve()
    for member in tar.getmembers():
        dest = (target / member.name).resolve()
        if not (member.isfile() or member.isdir()) or (dest != root and root not in dest.parents):
            raise ValueError(f"refusing to extract {member.name!r} from the model archive (outside the folder "
                             "or not a regular file)")
    tar.extractall(target)  # noqa: S202 - every member checked above
