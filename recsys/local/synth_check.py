"""Is ``cdk.out`` there and newer than what it was synthesized from?

The local run and the tests execute the synthesized templates, so a template older than the stack code that
makes it rehearses something nobody would deploy. ``make run`` and ``make test`` synthesize first; a direct
``python -m recsys run`` or ``pytest`` does not, and this names the problem in one line instead.
"""

from __future__ import annotations

from pathlib import Path

from settings.config import PROJECT_ROOT

#: What ``cdk synth`` reads: the app, its settings, the stacks and everything they package as assets.
SYNTH_INPUTS = ("app.py", "cdk.json", "stacks", "pipeline_steps", "settings", "lambdas", "sagemaker_src",
                "glue_jobs", "sql", "monitoring")  # fmt: skip
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def newest_input(root: Path = PROJECT_ROOT) -> tuple[float, Path] | None:
    """The most recently modified file among the synth's inputs (mtime, path), or None if there is none."""
    newest: tuple[float, Path] | None = None
    for name in SYNTH_INPUTS:
        top = root / name
        files = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in files:
            if _SKIP_PARTS.intersection(path.parts) or path.suffix == ".pyc":
                continue
            mtime = path.stat().st_mtime
            if newest is None or mtime > newest[0]:
                newest = (mtime, path)
    return newest


def synth_problem(out_dir: Path, template_prefix: str, root: Path = PROJECT_ROOT) -> str | None:
    """One line naming why ``out_dir`` cannot be trusted (missing, or older than a synth input), else None."""
    manifest = out_dir / "manifest.json"
    template = out_dir / f"{template_prefix}-data.template.json"
    if not manifest.is_file() or not template.is_file():
        return f"{out_dir}/ holds no synthesized templates ({template.name} is missing): run `make synth` first"
    newest = newest_input(root)
    if newest is not None and newest[0] > manifest.stat().st_mtime:
        changed = newest[1].relative_to(root) if newest[1].is_relative_to(root) else newest[1]
        return f"{out_dir}/ is stale: {changed} changed after the last synth; run `make synth` first"
    return None
