"""Processing-job entry point: the trained model plus its serving code as one deployable ``model.tar.gz``.

SageMaker's PyTorch serving containers (1.2 and later) load the handler from ``code/`` *inside* the
model archive; they do not fetch a separate source archive. So the registered model is the
training output (``model.json``, ``arrays.npz`` at the top) with this folder's code under
``code/`` (``inference.py``, ``recsys_core/``, ``requirements.txt``, which the container installs: the
processing steps' ``requirements-runtime.txt`` under that name, not the training job's, which adds JAX).
This is what the SDK's hidden "repack" step would do, as an explicit step that needs no upload
when the pipeline definition is produced.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP_PARTS = ("__pycache__",)
#: The serving container installs ``code/requirements.txt``: this folder's runtime pins go there; the
#: training job's requirements (the runtime plus JAX, ~385 MB) and the GPU plugin stay out of the model.
RUNTIME_REQUIREMENTS = "requirements-runtime.txt"
TRAINING_ONLY = ("requirements.txt", "requirements-gpu.txt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", default="/opt/ml/processing/model", help="model.tar.gz or the artefacts")
    p.add_argument("--code-dir", default=str(HERE), help="the serving code (this script's folder)")
    p.add_argument("--output-dir", default="/opt/ml/processing/packaged")
    return p.parse_args(argv)


def _files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part in SKIP_PARTS or part.startswith(".") for part in p.relative_to(root).parts)
    )


def _model_members(model_dir: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of the model artefacts, from SageMaker's model.tar.gz or a plain directory."""
    archive = model_dir / "model.tar.gz"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]  # type: ignore[union-attr]
    members = [(p.relative_to(model_dir).as_posix(), p.read_bytes()) for p in _files(model_dir)]
    if not members:
        raise FileNotFoundError(f"no model.tar.gz or model files in {model_dir}")
    return members


def package(model_dir: Path, code_dir: Path, output_dir: Path) -> Path:
    members = _model_members(model_dir)
    if not any(name == "model.json" for name, _ in members):
        raise FileNotFoundError(f"{model_dir} holds no model.json: not a trained recommender")
    if not (code_dir / "inference.py").is_file():
        raise FileNotFoundError(f"{code_dir} has no inference.py")
    if not (code_dir / RUNTIME_REQUIREMENTS).is_file():
        raise FileNotFoundError(f"{code_dir} has no {RUNTIME_REQUIREMENTS}")
    code = [(p.relative_to(code_dir).as_posix(), p.read_bytes()) for p in _files(code_dir)]
    members += [(f"code/{'requirements.txt' if name == RUNTIME_REQUIREMENTS else name}", data)
                for name, data in code if name not in TRAINING_ONLY]
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "model.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    print(f"[package] {len(members)} files -> {target} ({target.stat().st_size:,} bytes)", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    package(Path(args.model_dir), Path(args.code_dir), Path(args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
