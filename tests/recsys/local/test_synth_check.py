"""A missing or stale ``cdk.out`` is named in one line (by ``recsys run`` and in pytest's header)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from recsys.cli import main
from recsys.local.synth_check import synth_problem


def _project(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "ml_stack.py").write_text("x = 1\n")
    (root / "cdk.json").write_text("{}\n")
    out = root / "cdk.out"
    out.mkdir()
    for name in ("manifest.json", "recsys-dev-data.template.json"):
        (out / name).write_text("{}\n")
    return root, out


def _age(path: Path, seconds: float) -> None:
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_a_synth_newer_than_every_input_is_trusted(tmp_path):
    root, out = _project(tmp_path)
    for p in (root / "stacks" / "ml_stack.py", root / "cdk.json"):
        _age(p, 60)
    assert synth_problem(out, "recsys-dev", root) is None


def test_a_stack_changed_after_the_synth_is_named(tmp_path):
    root, out = _project(tmp_path)
    _age(out / "manifest.json", 60)
    _age(root / "cdk.json", 120)
    problem = synth_problem(out, "recsys-dev", root)
    assert problem is not None and "stale" in problem and "stacks/ml_stack.py" in problem and "make synth" in problem


def test_a_missing_template_is_named_not_a_routing_error(tmp_path):
    root, out = _project(tmp_path)
    (out / "recsys-dev-data.template.json").unlink()
    problem = synth_problem(out, "recsys-dev", root)
    assert problem is not None and "recsys-dev-data.template.json is missing" in problem


def test_recsys_run_without_cdk_out_stops_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path / "nowhere"))
    assert main(["run", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no synthesized templates" in err and "make synth" in err
    assert not (tmp_path / "w").exists()  # stopped before anything was generated or provisioned
    shutil.rmtree(tmp_path / "w", ignore_errors=True)
