"""Run Python entry points up to their argparse ``parse_args`` and stop there (a helper of the docs check).

Both ``parse_args`` and ``parse_known_args`` (SageMaker scripts accept unknown hyperparameters) stop the entry
point once its outermost call has parsed. Reads a JSON list of jobs on stdin, ``{"module": "recsys" | null,
"script": "bench/x.py" | null, "args": [...], "env": {...}}``, and writes one result per job to stdout:
``status`` is ``parsed`` (the entry point's own parser accepted the arguments; nothing after it ran), ``help``
(``--help`` printed and exited 0), ``error`` (argparse refused them: ``stderr`` says why) or ``crash`` (the entry
point failed before parsing).

Why a separate process: the entry points import heavy packages and set process state (``sys.path``, environment
variables) at import; one child process for all of them keeps pytest's own process clean and costs one start-up.
Only files that use argparse are given to it (the caller checks), so no entry point runs past its parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import sys


class Parsed(BaseException):
    """Raised in place of returning from ``parse_args``: stops the entry point (not an ``Exception``, so a
    ``try: ... except Exception`` around ``main()`` cannot swallow it)."""


def main() -> None:
    jobs = json.load(sys.stdin)
    real_parse_args = argparse.ArgumentParser.parse_args
    real_parse_known_args = argparse.ArgumentParser.parse_known_args
    depth = [0]  # parse_args and subparsers call parse_known_args: only the outermost call stops the entry point

    def stop_after(real):  # noqa: ANN001, ANN202
        def parse(self, args=None, namespace=None):  # noqa: ANN001, ANN202 - argparse's signature
            depth[0] += 1
            try:
                result = real(self, args, namespace)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                raise Parsed
            return result

        return parse

    argparse.ArgumentParser.parse_args = stop_after(real_parse_args)
    argparse.ArgumentParser.parse_known_args = stop_after(real_parse_known_args)
    results = []
    for job in jobs:
        out, err = io.StringIO(), io.StringIO()
        saved_argv, saved_path, saved_env = sys.argv[:], sys.path[:], dict(os.environ)
        os.environ.update(job.get("env", {}))
        status = "crash"
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if job.get("module"):
                    sys.argv = [job["module"], *job["args"]]
                    runpy.run_module(job["module"], run_name="__main__", alter_sys=True)
                else:
                    script = os.path.abspath(job["script"])
                    sys.argv = [job["script"], *job["args"]]
                    sys.path.insert(0, os.path.dirname(script))  # as `python path/script.py` does
                    runpy.run_path(script, run_name="__main__")
            err.write("the entry point returned without calling ArgumentParser.parse_args")
        except Parsed:
            status = "parsed"
        except SystemExit as exit_:
            status = "help" if exit_.code in (0, None) else "error"
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
            err.write(f"{type(exc).__name__}: {exc}")
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
            os.environ.clear()
            os.environ.update(saved_env)
        results.append({"status": status, "stdout": out.getvalue()[-3000:], "stderr": err.getvalue()[-3000:]})
    json.dump(results, sys.__stdout__)


if __name__ == "__main__":
    main()
