"""The project's one CLI: ``generate`` data, ``run`` the whole flow locally, ``forget`` a shopper, ``serve``.

Errors a user can cause (bad paths, bad files, bad config) print one clear line and exit 2;
a traceback is never the interface.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from glue_jobs.raw_reader import RawDataError
from settings.config import ConfigError

#: A failed AWS call: the message names the operation, the error code and, for S3, the object
#: (``s3://bucket/key``); S3UploadFailedError (a Boto3Error) is how upload_file reports a failed PUT.
AWS_ERRORS = (ClientError, BotoCoreError, Boto3Error)


class UserError(Exception):
    """A problem the user can fix (message says how); printed without a traceback."""


def _positive(value: str) -> int:
    try:
        number = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _add_generator_args(p: argparse.ArgumentParser) -> None:
    from recsys.generator import GeneratorConfig

    d = GeneratorConfig()
    p.add_argument("--users", type=_positive, default=d.n_users, help=f"number of users (default {d.n_users:,})")
    p.add_argument("--products", type=_positive, default=d.n_products, help=f"products (default {d.n_products:,})")
    p.add_argument(
        "--interactions",
        type=_positive,
        default=d.n_interactions,
        help=f"events, approx. (default {d.n_interactions:,})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--days", type=_positive, default=d.days, help=f"days of history (default {d.days})")
    p.add_argument(
        "--dirty-fraction",
        type=float,
        default=d.dirty_fraction,
        help=f"share of dirty rows (default {d.dirty_fraction})",
    )


def _generator_config(args: argparse.Namespace, fmt: str = "csv"):
    from recsys.generator import GeneratorConfig

    return GeneratorConfig(
        n_users=args.users,
        n_products=args.products,
        n_interactions=args.interactions,
        seed=args.seed,
        days=args.days,
        dirty_fraction=args.dirty_fraction,
        fmt=fmt,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from recsys.generator import generate_to_dir

    summary = generate_to_dir(Path(args.out), _generator_config(args, args.format), progress=lambda m: print(f"  {m}"))
    for table, path in summary.paths.items():
        dirty = sum(summary.dirty_rows.get(table, {}).values())
        print(f"  {table:<13} {summary.rows[table]:>12,} rows  ({dirty:,} dirty)  -> {path}")
    print(f"generated in {summary.seconds:.1f} s")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from recsys.local.curation import cdk_out
    from recsys.local.synth_check import synth_problem
    from recsys.main_job import run_main_job
    from settings.config import load_project_config

    if args.training_engine:
        _synth_with_engine(args.training_engine, args.env)
    problem = synth_problem(cdk_out(), load_project_config(args.env).prefix)
    if problem:  # `make run` synthesizes first; a direct `python -m recsys run` may not have
        raise UserError(problem)
    return run_main_job(args, _generator_config(args))


def _synth_with_engine(engine: str, env: str | None) -> None:
    """Synthesize the templates with ``training_engine`` overridden (``cdk synth -c training_engine=...``) into
    ``cdk.out.<engine>``, and point the local run at them: the run follows that template's TrainModel step."""
    import os
    import subprocess

    outdir = Path(f"cdk.out.{engine}")
    command = ["npx", "cdk", "synth", "--quiet", "--no-notices", "-c", f"training_engine={engine}",
               "--output", str(outdir)] + (["-c", f"env={env}"] if env else [])
    print(f"==> {' '.join(command)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"})
    if done.returncode != 0:
        raise UserError(f"cdk synth with training_engine={engine} failed: {done.stderr.strip()[-500:]}")
    os.environ["CDK_OUTDIR"] = str(outdir)


def cmd_forget(args: argparse.Namespace) -> int:
    from recsys.local.erasure import forget_locally, report_lines
    from recsys.local.moto_server import LocalAws
    from settings.config import load_project_config

    cfg = load_project_config(args.env)
    workdir = Path(args.workdir)
    if not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is not a folder (a local run writes it: `make run`)")
    aws = LocalAws(url=args.endpoint_url, port=0, region=cfg.region) if args.endpoint_url else None
    if aws is None:
        print(f"erasing from the workdir {workdir} (the run's in-memory local AWS ended with it; "
              "--endpoint-url reaches a live one)")  # fmt: skip
    done = forget_locally(cfg, args.user_id, workdir, aws)
    for line in report_lines(done):
        print(f"  {line}")
    return 0 if done.gone else 1


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from recsys.local.endpoint import WORKER_THREADS, serve_forever

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    logging.getLogger("recsys.local.endpoint").setLevel(logging.INFO)  # model loads and reloads
    logging.getLogger("recsys.local.endpoint.access").setLevel(logging.INFO if args.log_requests else logging.WARNING)
    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        raise UserError(f"--model-dir {model_dir} is not a folder (train one with `make run`: see its output)")
    serve_forever(model_dir, host=args.host, port=args.port, threads=args.threads or WORKER_THREADS,
                  workers=args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic Meesho-like marketplace in the raw schema")
    gen.add_argument("--out", default="out/raw", help="output folder (default out/raw)")
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv")
    _add_generator_args(gen)
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="run the whole flow locally: moto AWS, recipes, catalogue, features")
    run.add_argument(
        "--data", help="folder with your own users/products/interactions .csv or .parquet (default: generate)"
    )
    run.add_argument("--workdir", default="out/run", help="where local outputs go (default out/run)")
    run.add_argument("--env", default=None, help="environment from cdk.json (default: context 'env')")
    run.add_argument("--serve", action="store_true", help="keep the local endpoint running at the end (Ctrl-C stops)")
    run.add_argument("--training-engine", choices=("single", "spark", "auto"), default=None,
                     help="synthesize with this training_engine (into cdk.out.<engine>) and run from that template; "
                          "spark prints the Spark job's stages and train.py's NDCG on the same split beside it")
    _add_generator_args(run)
    run.set_defaults(func=cmd_run)

    forget = sub.add_parser(
        "forget",
        help="erase a shopper's rows everywhere the local run keeps them (DPDP/GDPR), with an audit record",
        description="Remove every row of --user-id from the workdir (raw, lake, pipeline outputs) and, with "
        "--endpoint-url, from a live local AWS (all bucket versions, the recent-items table); add the user's keyed "
        "hash to the suppression list the next training applies; write an audit record without the raw id; then "
        "scan everything for the user. Safe to rerun: an interrupted request resumes. Exit 1 if the scan still "
        "finds the user.",
    )
    forget.add_argument("--user-id", required=True, help="the shopper to forget")
    forget.add_argument("--workdir", default="out/run", help="the local run's outputs (default out/run)")
    forget.add_argument("--env", default=None, help="environment from cdk.json (default: context 'env')")
    forget.add_argument("--endpoint-url", default=None, help="a running local AWS (moto server) to erase from too")
    forget.set_defaults(func=cmd_forget)

    serve = sub.add_parser(
        "serve",
        help="serve a trained model dir over HTTP like a SageMaker endpoint",
        description="Serve --model-dir on GET /ping and POST /invocations until Ctrl-C or SIGTERM. "
        "SIGHUP reloads the model from --model-dir's current contents; if the new model fails to load, "
        "the error is logged and the previous model keeps serving.",
    )
    serve.add_argument("--model-dir", required=True, help="a model folder written by train.py (SM_MODEL_DIR)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=_positive, default=None,
                       help="waitress threads per worker (default 2: the handler is CPU-bound)")
    serve.add_argument(
        "--workers", type=_positive, default=1, help="pre-forked worker processes, about one per core (default 1)"
    )
    serve.add_argument("--log-requests", action="store_true", help="log one line per request (stderr)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, RawDataError, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except AWS_ERRORS as err:  # retried per the client config first (recsys.local.moto_server.MAX_ATTEMPTS)
        print(f"error: AWS request failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
