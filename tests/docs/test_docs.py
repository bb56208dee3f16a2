"""The docs cannot drift: every command they show is exercised, and every relative link resolves.

Which files: ``README.md``, ``SECURITY.md``, ``docs/*.md`` and every ``README*.md`` below the root (not
``CHANGELOG.md``: history may name commands that are gone; its links are checked). A *command* is a line of a
fenced ``bash``/``sh``/``shell``/``console`` block (``\\`` continuations joined, ``# comments`` dropped), or an
inline code span that starts with ``make``, ``.venv/bin/python``, ``python``, ``npx``, ``aws`` or ``curl`` and an
argument (leading ``VAR=value`` assignments allowed). In a command, ALL-CAPS words (``DIR``, ``FOLDER``, ``ARN``,
``N``...) and ``<...>`` are placeholders, and ``...`` ends the part that is checked (so a mention in prose,
``python -m recsys forget ...``, may leave out required arguments).

1. Every command passes its static check, whatever it costs to run:
   - ``make TARGET [VAR=value]``: ``make -n`` accepts it; the ``ARGS`` of ``make run`` are parsed by
     ``python -m recsys run``'s own argparse.
   - ``python -m recsys SUB ...``, ``.venv/bin/python path/script.py ...``: the file exists and its own argparse
     accepts exactly the arguments shown. ``argv_probe.py`` runs each entry point in a child process up to
     ``parse_args`` and stops it there, so nothing heavy runs. A script without argparse cannot be probed and
     must be mapped (step 2).
   - ``aws SERVICE OPERATION --option ...``: the operation and each option exist in botocore's API model (the CLI
     is generated from it; ``aws s3 cp|ls|sync|...`` are the CLI's own commands), enum values are allowed ones,
     required options are present unless the command ends in ``...``.
   - ``npx cdk SUB ...``: ``cdk SUB --help`` of the pinned CLI lists every option shown; ``-c env=X`` names an
     environment of ``cdk.json``.
   - ``curl ... -d BODY``: the body is valid JSON.
2. Every command is then either RUN here or MAPPED: ``--help`` commands and the exact lines in ``RUN_HERE``
   run for real (cheap); everything else is mapped in ``EXERCISED_BY``, keyed by the command's head (``make run``,
   ``recsys forget``, ``bench/bench_soak.py``, ``aws lambda invoke``, ``npx cdk deploy``, ``curl``), to the test
   that exercises what it does, with the reason it cannot run here (minutes of work, an AWS account, a server).
   A command neither run nor mapped fails, and so does a mapping to a test that no longer exists.
3. Every relative link ``[text](path#anchor)`` of those files and ``CHANGELOG.md`` points to a file of the
   repository and, for a Markdown target, to one of its headings (GitHub's anchor rules).

To make a new command pass: a ``--help`` needs nothing. Otherwise add its head to ``EXERCISED_BY`` with the
test (``tests/path.py::test_name``) that does what the command does and one line saying why the command itself is
not run here; if no test does it, write one. Cheap and deterministic commands (seconds, no network, no AWS) may go
to ``RUN_HERE`` instead.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import CHILD_BOUND_S, HEAVY_TIMEOUT_S

#: One worker runs the module, so the probe and the CDK CLI's help start once (about 5-10 s on 2 busy cores; over
#: 2 minutes on a loaded machine: the probe imports every entry point).
pytestmark = [pytest.mark.xdist_group("docs"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("argv_probe.py")
SKIP_DIRS = {"node_modules", ".venv", "cdk.out", "out", ".git", ".pytest_cache"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PROGRAMS = ("make", ".venv/bin/python", "python", "python3", "npx", "aws", "curl")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]*>|\S*<[^>]+>\S*)$")
#: Values for placeholders that must parse as a number; any other placeholder is passed as it is written.
PLACEHOLDER_VALUES = {"N": "1"}
#: Options of the AWS CLI itself (not of an operation).
AWS_CLI_OPTIONS = {
    "--endpoint-url", "--region", "--profile", "--output", "--query", "--cli-binary-format", "--no-verify-ssl",
    "--no-paginate", "--no-cli-pager", "--debug", "--ca-bundle", "--cli-read-timeout", "--cli-connect-timeout",
    "--no-sign-request", "--color", "--cli-input-json", "--generate-cli-skeleton",
}  # fmt: skip
AWS_FLAGS = {"--no-verify-ssl", "--no-paginate", "--no-cli-pager", "--debug"}  # options without a value
AWS_S3_COMMANDS = {"cp", "mv", "rm", "ls", "sync", "mb", "rb", "presign", "website"}

#: Commands run for real by this test (cheap, offline, deterministic), exactly as written in the docs.
RUN_HERE = {
    ".venv/bin/python bench/bench_public_data.py --self-check",
    ".venv/bin/python bench/bench_cost.py",
}

#: head -> (test that exercises what the command does, why the command itself is not run here).
EXERCISED_BY: dict[str, tuple[str, str]] = {
    "-m tests.permissions.recorder": (
        "tests/permissions/test_lambda_record.py::test_the_committed_record_is_exactly_what_the_lambda_tests_call",
        "it re-runs the Lambda tests (minutes) to rewrite the record; the test runs the same recorder and compares",
    ),
    "make run": (
        "tests/recsys/test_main_job.py::test_main_job_runs_end_to_end_and_reconciles_rows",
        "the whole local flow (about a minute, a moto server, two pipeline runs); the test runs the same "
        "recsys.main_job the target calls, on the synthesized cdk.out",
    ),
    "make test": (
        "tests/docs/test_docs.py::test_ci_runs_make_test_which_synthesizes_then_runs_the_suite",
        "it is the suite this test runs in; the test checks that .ci/run calls it and what it runs",
    ),
    "make setup": (
        "tests/docs/test_docs.py::test_ci_runs_make_test_which_synthesizes_then_runs_the_suite",
        "make test depends on it (venv, pinned packages, npm ci), so every CI run does it",
    ),
    "make bench": (
        "tests/docs/test_docs.py::test_make_bench_runs_only_scripts_whose_arguments_parse",
        "about 10 minutes of benchmarks; the test parses every line of the target with its script's argparse",
    ),
    "npx cdk synth": (
        "tests/stacks/test_template_checks.py::test_cdk_nag_passes_with_only_acknowledged_findings",
        "make test runs it before the suite (cdk.out); the stack tests synthesize the same app with cdk-nag",
    ),
    "npx cdk bootstrap": (
        "tests/stacks/test_deployable.py::test_a_real_account_or_analytics_off_passes",
        "needs an AWS account; what it prepares is the standard CDK toolkit stack",
    ),
    "npx cdk deploy": (
        "tests/stacks/test_template_checks.py::test_cfn_lint_reports_no_errors",
        "needs an AWS account; the templates it deploys are the ones cfn-lint, cdk-nag and the stack tests check",
    ),
    "app.py": (
        "tests/stacks/test_deployable.py::test_the_cdk_entry_point_exits_with_the_key_for_prod",
        "synthesizes every stack (tens of seconds); the test runs the entry point",
    ),
    "aws s3 cp": (
        "tests/recsys/local/test_events.py::test_the_templates_chain_upload_to_curation_to_pipeline_to_deploy",
        "needs an AWS account; the test routes an upload's Object Created event through the synthesized rules",
    ),
    "aws sagemaker update-model-package": (
        "tests/lambdas/test_deploy_endpoint.py::test_next_approval_creates_new_config_and_updates_blue_green_with_canary_and_rollback_alarms",
        "needs an AWS account; the test feeds the deploy Lambda the approval event this call causes",
    ),
    "aws lambda invoke": (
        "tests/erasure/test_forget.py::test_the_lambda_handler_runs_the_same_erasure_with_its_store_list",
        "needs an AWS account; the test calls the erasure Lambda's handler on a shop in moto",
    ),
    "aws sagemaker-runtime invoke-endpoint": (
        "tests/recsys/local/test_endpoint.py::test_boto3_sagemaker_runtime_invoke_endpoint_works_against_the_local_endpoint",
        "needs a running endpoint; the test calls the local one through the same SageMaker Runtime API",
    ),
    "curl": (
        "tests/recsys/local/test_endpoint.py::test_single_request_returns_k_scored_recommendations_for_a_known_user",
        "needs a running endpoint (make run ARGS=--serve); the test posts the same request shape to one",
    ),
    "recsys run": (
        "tests/recsys/test_main_job.py::test_main_job_runs_end_to_end_and_reconciles_rows",
        "what make run calls (see make run)",
    ),
    "recsys generate": (
        "tests/recsys/test_generator.py::test_the_generate_command_writes_the_three_tables_with_the_counts_it_prints",
        "the docs show a 5M-interaction shop (a minute); the test runs the same command small",
    ),
    "recsys serve": (
        "tests/recsys/local/test_endpoint_reload.py::test_sighup_reloads_the_served_model_dir_and_a_broken_one_is_refused",
        "serves until stopped; the test starts `python -m recsys serve`, sends SIGHUP and stops it",
    ),
    "recsys forget": (
        "tests/erasure/test_forget.py::test_the_cli_forgets_from_a_live_local_aws_and_the_workdir_and_exits_0_when_gone",
        "needs a local run's workdir; the test runs the command on a shop with every store filled",
    ),
    "sagemaker_src/train.py": (
        "tests/sagemaker_src/test_end_to_end.py::test_train_prints_progress_quarantines_dirty_rows_and_writes_artefacts",
        "trains a model (minutes on a real shop); the test runs train.py with the SM_* variables on a small one",
    ),
    "bench/bench_public_data.py": (
        "tests/sagemaker_src/test_end_to_end.py::test_trained_model_serves_through_the_handlers",
        "about 2 h and the shared public logs (outside the repository); its metric code runs here "
        "(--self-check), and the project side is train.py + predict_fn as this test runs them",
    ),
    "bench/bench_spark.py": (
        "tests/sagemaker_src/test_spark_train.py::test_spark_ids_and_history_equal_the_pandas_path_on_the_same_rows",
        "trains train.py and spark_train.py on real logs or a 10M shop (tens of minutes); the test runs "
        "spark_train.py in local[2] on a small shop and checks its bundle against the pandas path",
    ),
    "bench/bench_cost.py": (
        "tests/bench/test_bench_cost.py::test_the_bill_of_a_tiny_shop_is_the_hand_computed_arithmetic",
        "the same bill with other inputs (a scale run's JSON, other sizes); the default command runs here",
    ),
    "bench/bench_blend_frontier.py": (
        "tests/bench/test_bench_blend_frontier.py::"
        "test_each_weight_is_scored_on_the_test_rows_and_the_order_model_wins_the_per_user_temporal_test",
        "fits SASRec twice on a shared public log (outside the repository, ~30 min); the test runs the same "
        "scoring of blends per weight on a small log",
    ),
    "bench/bench_paired.py": (
        "tests/sagemaker_src/test_end_to_end.py::test_trained_model_serves_through_the_handlers",
        "trains on a shared public log (outside the repository) for minutes; same code path as bench_public_data",
    ),
    "bench/bench_data_plane.py": (
        "tests/recsys/test_main_job.py::test_main_job_runs_end_to_end_and_reconciles_rows",
        "times the main job at larger scales (minutes); the test runs the same flow at the small scale",
    ),
    "bench/bench_generate.py": (
        "tests/recsys/test_generator.py::test_summary_row_counts_match_files",
        "writes up to 10M rows; the test runs the same generator small",
    ),
    "bench/bench_recommender.py": (
        "tests/sagemaker_src/test_end_to_end.py::test_trained_model_serves_through_the_handlers",
        "trains and times models up to 10M interactions (minutes to an hour); the test trains and serves small",
    ),
    "bench/bench_endpoint.py": (
        "tests/recsys/local/test_endpoint.py::test_concurrent_requests_all_succeed_with_the_sequential_answers",
        "a load test of 20+ s per level; the test sends concurrent requests to the same endpoint",
    ),
    "bench/bench_serving.py": (
        "tests/recsys/local/test_bench_serving.py::test_a_case_is_served_by_the_documented_command_and_loaded",
        "trains every case (real logs, a 2M-product shop: up to hours) and loads each for 20 s; the test serves a "
        "small model with the same command, load clients and figures",
    ),
    "bench/bench_soak.py": (
        "tests/recsys/local/test_soak.py::test_short_soak_of_the_real_handler_has_no_errors_and_a_row_per_window",
        "90 s of load; the test runs the same soak logic for seconds",
    ),
    "bench/bench_streaming.py": (
        "tests/lambdas/test_stream_consumer.py::test_good_batch_keeps_recent_distinct_products_newest_first_with_counts_and_ttl",
        "timed batches on moto (a minute); the test runs the same consumer",
    ),
    "bench/bench_robustness.py": (
        "tests/reliability/test_endpoint_fuzz.py::test_http_answers_equal_the_handler_in_process_for_any_json_request",
        "tens of thousands of requests; the test runs the same corpora smaller",
    ),
    "bench/bench_faults.py": (
        "tests/reliability/test_faults_pipeline.py::test_pipeline_interrupted_in_a_step_then_rerun_gives_the_same_model_and_no_duplicate_package",
        "interrupts every stage and step (minutes); the tests interrupt each one",
    ),
    "bench/bench_security.py": (
        "tests/stacks/test_security.py::test_every_data_store_is_encrypted_with_the_customer_key_or_a_listed_reason",
        "synthesizes prod (tens of seconds); the test checks the same rules (stacks/security.py)",
    ),
}  # fmt: skip


# --- what the docs contain ------------------------------------------------------------------------------------


def _doc_files(*, history: bool = False) -> list[Path]:
    files = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += [p for p in sorted(ROOT.glob("*/**/README*.md")) if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    if history:
        files.append(ROOT / "CHANGELOG.md")
    return [f for f in files if f.is_file()]


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str
    tokens: tuple[str, ...] = field(compare=False)
    env: tuple[tuple[str, str], ...] = field(compare=False)
    elided: bool = field(compare=False)  # the docs end it with "...": only the part shown is checked

    @property
    def program(self) -> str:
        return self.tokens[0]

    @property
    def args(self) -> list[str]:
        return list(self.tokens[1:])

    def python_target(self) -> tuple[str | None, str | None, list[str]]:
        """(module, script, arguments) of a python command."""
        args = self.args
        if args[:1] == ["-m"]:
            return args[1], None, args[2:]
        return None, args[0], args[1:]

    @property
    def head(self) -> str:
        """The key of EXERCISED_BY: the program and what it runs, without options."""
        if self.program == "make":
            return "make " + next((a for a in self.args if not ASSIGNMENT.match(a)), "")
        if self.program in ("python", "python3", ".venv/bin/python"):
            module, script, args = self.python_target()
            if module == "recsys":
                return "recsys " + (args[0] if args else "")
            return script or f"-m {module}"
        if self.program == "npx":
            return " ".join(self.tokens[:3])
        if self.program == "aws":
            return " ".join(self.tokens[:3])
        return self.program

    @property
    def is_help(self) -> bool:
        return "--help" in self.tokens or "-h" in self.tokens


def _parse(where: str, text: str) -> Command | None:
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        raise AssertionError(f"{where}: cannot split `{text}` as a shell line: {exc}") from None
    env = []
    while tokens and ASSIGNMENT.match(tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env.append((name, value))
    if len(tokens) < 2 or tokens[0] not in PROGRAMS:
        return None
    elided = "..." in tokens
    if elided:
        tokens = tokens[: tokens.index("...")]
    return Command(where, text, tuple(tokens), tuple(env), elided)


FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")


def _commands_in(path: Path) -> Iterator[Command]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT)
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        marker, lang = fence.groups()
        j = i + 1
        pending, start = "", 0
        while j < len(lines) and not lines[j].strip().startswith(marker):
            if lang in SHELL_LANGS:
                line = lines[j].rstrip()
                start = start or j + 1
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                else:
                    text = (pending + line).strip().removeprefix("$ ")
                    if text and not text.startswith("#"):
                        command = _parse(f"{rel}:{start}", text)
                        if command is None:
                            raise AssertionError(
                                f"{rel}:{start}: `{text}` in a {lang} block is no command this check knows "
                                f"({', '.join(PROGRAMS)}): show it in a plain ``` block or teach tests/docs"
                            )
                        yield command
                    pending, start = "", 0
            j += 1
        i = j + 1
    # inline spans, also across one line break (a span wrapped by the editor)
    offsets, text = [], ""
    for number, line in prose:
        offsets.append((len(text), number))
        text += line + "\n"
    for match in INLINE.finditer(text):
        number = max(n for offset, n in offsets if offset <= match.start())
        span = " ".join(match.group(1).split())
        command = _parse(f"{rel}:{number}", span)
        if command is not None:
            yield command


def all_commands() -> list[Command]:
    return [c for f in _doc_files() for c in _commands_in(f)]


COMMANDS = all_commands()


def _unique(commands: list[Command]) -> list[Command]:
    seen: dict[str, Command] = {}
    for c in commands:
        seen.setdefault(c.text, c)
    return list(seen.values())


UNIQUE = _unique(COMMANDS)


def _ids(commands: list[Command]) -> list[str]:
    return [f"{c.where} {c.text[:60]}" for c in commands]


# --- python entry points: argparse accepts exactly what the docs show -------------------------------------------


def _placeholders(args: list[str]) -> list[str]:
    return [PLACEHOLDER_VALUES.get(a, a) for a in args]


def _probe_job(command: Command) -> dict | None:
    """The argv_probe job of a python command; None when its file cannot be probed (no argparse); a job with
    ``missing`` when the file does not exist (reported by the command's own test, not by the fixture)."""
    module, script, args = command.python_target()
    env = dict(command.env)
    if module is not None:
        source = ROOT / module.replace(".", "/") / "__main__.py"
        if not source.is_file():
            source = ROOT / (module.replace(".", "/") + ".py")
    else:
        source = ROOT / script
    if not source.is_file():
        return {"missing": f"{command.where}: `{command.text}` runs {source.relative_to(ROOT)}, which does not exist"}
    if module is None and "ArgumentParser" not in source.read_text(encoding="utf-8"):
        return None
    return {"module": module, "script": script, "args": _placeholders(args), "env": env}


def _make_run_job(command: Command) -> dict | None:
    """`make run ARGS="..."`: the ARGS, parsed by `python -m recsys run`."""
    for arg in command.args:
        name, _, value = arg.partition("=")
        if name == "ARGS" and "run" in command.args and value.strip() not in ("", "..."):
            return {"module": "recsys", "script": None, "args": ["run", *_placeholders(shlex.split(value))], "env": {}}
    return None


def _make_bench_jobs() -> list[tuple[str, dict]]:
    """Every `$(PY) bench/...` line of the Makefile's bench target."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"^bench:.*?\n((?:\t.*\n?)+)", text, re.M)
    assert block, "the Makefile has no bench target"
    jobs = []
    for line in block.group(1).splitlines():
        tokens = shlex.split(line.strip())
        if tokens and tokens[0] == "$(PY)":
            jobs.append((line.strip(), {"module": None, "script": tokens[1], "args": tokens[2:], "env": {}}))
    return jobs


@pytest.fixture(scope="module")
def probed() -> dict[str, dict]:
    """One child process parses every python command's arguments (and make run's ARGS, make bench's lines)."""
    jobs: dict[str, dict] = {}
    for c in UNIQUE:
        if c.program in ("python", "python3", ".venv/bin/python"):
            job = _probe_job(c)
        elif c.program == "make":
            job = _make_run_job(c)
        else:
            job = None
        if job is not None:
            jobs[c.text] = job
    for line, job in _make_bench_jobs():
        jobs[f"make bench: {line}"] = job
    missing = {k: {"status": "missing", "stderr": v["missing"]} for k, v in jobs.items() if "missing" in v}
    runnable = {k: v for k, v in jobs.items() if k not in missing}
    proc = subprocess.run(
        [sys.executable, str(PROBE)], input=json.dumps(list(runnable.values())), capture_output=True, text=True,
        cwd=ROOT, timeout=CHILD_BOUND_S, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, f"argv_probe failed: {proc.stderr[-3000:]}"
    return dict(zip(runnable, json.loads(proc.stdout), strict=True)) | missing


PYTHON_COMMANDS = [c for c in UNIQUE if c.program in ("python", "python3", ".venv/bin/python")]


@pytest.mark.parametrize("command", PYTHON_COMMANDS, ids=_ids(PYTHON_COMMANDS))
def test_python_commands_are_accepted_by_their_own_argparse(command: Command, probed: dict[str, dict]) -> None:
    result = probed.get(command.text)
    if result is None:  # no argparse in the file: it must be mapped (test_every_command_is_run_or_mapped)
        assert command.head in EXERCISED_BY, f"{command.where}: `{command.text}` has no argparse to check: map it"
        return
    if command.elided and result["status"] == "error" and "arguments are required" in result["stderr"]:
        return  # `python -m recsys forget ...`: a mention, its required arguments elided on purpose
    assert result["status"] in ("parsed", "help"), (
        f"{command.where}: `{command.text}` is refused by its entry point ({result['status']}):\n{result['stderr']}"
    )


MAKE_COMMANDS = [c for c in UNIQUE if c.program == "make"]


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=_ids(MAKE_COMMANDS))
def test_make_commands_name_a_target_and_their_args_parse(command: Command, probed: dict[str, dict]) -> None:
    proc = subprocess.run(["make", "-n", "-s", *command.args], cwd=ROOT, capture_output=True, text=True,
                          timeout=CHILD_BOUND_S)
    assert proc.returncode == 0, f"{command.where}: `{command.text}`: make -n says {proc.stderr.strip()}"
    result = probed.get(command.text)
    if result is not None:
        assert result["status"] == "parsed", (
            f"{command.where}: `{command.text}`: `python -m recsys run` refuses these ARGS:\n{result['stderr']}"
        )


def test_make_bench_runs_only_scripts_whose_arguments_parse(probed: dict[str, dict]) -> None:
    bench = {k: v for k, v in probed.items() if k.startswith("make bench: ")}
    assert bench, "the Makefile's bench target runs no script"
    refused = {k: v["stderr"] for k, v in bench.items() if v["status"] != "parsed"}
    assert not refused, f"make bench lines refused by their scripts: {refused}"


def test_ci_runs_make_test_which_synthesizes_then_runs_the_suite() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    proc = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=CHILD_BOUND_S)
    assert proc.returncode == 0, proc.stderr
    steps = [s for s in ("-m venv", "pip install", "npm ci", "cdk synth", "-m pytest") if s in proc.stdout]
    assert steps == ["-m venv", "pip install", "npm ci", "cdk synth", "-m pytest"], proc.stdout


# --- AWS CLI, CDK CLI, curl -----------------------------------------------------------------------------------


AWS_COMMANDS = [c for c in UNIQUE if c.program == "aws"]


@pytest.mark.parametrize("command", AWS_COMMANDS, ids=_ids(AWS_COMMANDS))
def test_aws_commands_match_the_api_model(command: Command) -> None:
    import botocore.session
    from botocore import xform_name

    service, operation = [*command.args, ""][:2]
    rest = command.args[2:]
    if service == "s3" and operation in AWS_S3_COMMANDS:
        assert any(a.startswith("s3://") for a in rest), f"{command.where}: `{command.text}` names no s3:// path"
        return
    session = botocore.session.get_session()
    assert service in session.get_available_services(), f"{command.where}: no AWS service `{service}`"
    model = session.get_service_model(service)
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    assert operation in operations, f"{command.where}: {service} has no operation `{operation}`"
    op = model.operation_model(operations[operation])
    members = {f"--{xform_name(name, '-')}": shape for name, shape in op.input_shape.members.items()}
    given: dict[str, str | None] = {}
    positional = []
    it = iter(rest)
    for token in it:
        if token.startswith("--"):
            given[token] = None if token in AWS_FLAGS else next(it, None)
        else:
            positional.append(token)
    unknown = set(given) - set(members) - AWS_CLI_OPTIONS
    assert not unknown, f"{command.where}: `{command.text}`: {service} {operation} has no option(s) {sorted(unknown)}"
    for option, value in given.items():
        shape = members.get(option)
        if getattr(shape, "enum", None) and value and not PLACEHOLDER.match(value):
            assert value in shape.enum, f"{command.where}: {option} {value} is not one of {shape.enum}"
    streaming_output = op.has_streaming_output  # the CLI writes it to a file named by one positional argument
    assert len(positional) <= (1 if streaming_output else 0), f"{command.where}: unexpected arguments {positional}"
    if not command.elided:
        missing = {f"--{xform_name(n, '-')}" for n in op.input_shape.required_members} - set(given)
        assert not missing, f"{command.where}: `{command.text}` lacks required option(s) {sorted(missing)}"
        if streaming_output:
            assert positional, f"{command.where}: `{command.text}`: {operation} writes its output to a file: name it"


CDK_COMMANDS = [c for c in UNIQUE if c.program == "npx"]


def test_cdk_commands_use_options_of_the_pinned_cli() -> None:
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "node_modules has no CDK CLI (make setup runs npm ci)"
    environments = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]["environments"]
    subcommands = sorted({c.tokens[2] for c in CDK_COMMANDS if c.tokens[1] == "cdk" and len(c.tokens) > 2})
    helps = {
        sub: subprocess.Popen([str(cdk), sub, "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"})
        for sub in subcommands
    }  # fmt: skip
    texts = {sub: proc.communicate(timeout=CHILD_BOUND_S)[0] for sub, proc in helps.items()}
    for c in CDK_COMMANDS:
        assert c.tokens[1] == "cdk", f"{c.where}: `{c.text}`: npx runs only the pinned cdk here"
        help_text = texts[c.tokens[2]]
        assert f"cdk {c.tokens[2]}" in help_text, f"{c.where}: the pinned CDK CLI has no `{c.tokens[2]}`"
        args = c.tokens[3:]
        for i, token in enumerate(args):
            if token.startswith("-"):
                option = token.split("=", 1)[0]
                assert re.search(rf"(^|[\s,]){re.escape(option)}\b", help_text, re.M), (
                    f"{c.where}: `{c.text}`: `cdk {c.tokens[2]} --help` lists no {option}"
                )
            if token in ("-c", "--context") and i + 1 < len(args) and args[i + 1].startswith("env="):
                env = args[i + 1].split("=", 1)[1]
                assert env in environments, f"{c.where}: cdk.json has no environment {env!r}"


CURL_COMMANDS = [c for c in UNIQUE if c.program == "curl"]


@pytest.mark.parametrize("command", CURL_COMMANDS, ids=_ids(CURL_COMMANDS))
def test_curl_bodies_are_json(command: Command) -> None:
    args = command.args
    for flag in ("-d", "--data", "--data-raw"):
        if flag in args:
            json.loads(args[args.index(flag) + 1])


# --- run or mapped ----------------------------------------------------------------------------------------------


def _test_exists(node: str) -> bool:
    path, _, name = node.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    parts = name.split("::")
    body = ast.parse(file.read_text(encoding="utf-8")).body
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for part in parts:
        found = next((n for n in body if isinstance(n, kinds) and n.name == part), None)
        if found is None:
            return False
        body = found.body
    return True


def test_every_command_is_run_or_mapped_to_an_existing_test(probed: dict[str, dict]) -> None:
    problems = []
    for c in COMMANDS:
        ran = (c.is_help and probed.get(c.text, {}).get("status") == "help") or c.text in RUN_HERE
        if not ran and c.head not in EXERCISED_BY:
            problems.append(f"{c.where}: `{c.text}` is neither run here nor mapped (EXERCISED_BY[{c.head!r}])")
    for head, (node, reason) in EXERCISED_BY.items():
        if not _test_exists(node):
            problems.append(f"EXERCISED_BY[{head!r}] names {node}, which does not exist")
        if not reason.strip():
            problems.append(f"EXERCISED_BY[{head!r}] gives no reason")
    assert not problems, "\n".join(problems)


def test_no_mapping_is_left_without_a_command() -> None:
    """A head no doc shows any more is dead weight that would hide a renamed command's missing mapping."""
    heads = {c.head for c in COMMANDS}
    internal = {"make test", "make setup", "make bench"}  # kept: the Makefile's own targets the docs name
    stale = sorted(set(EXERCISED_BY) - heads - internal)
    assert not stale, f"EXERCISED_BY maps commands no doc shows: {stale}"


@pytest.mark.parametrize("line", sorted(RUN_HERE))
def test_cheap_commands_run(line: str) -> None:
    assert any(c.text == line for c in COMMANDS), f"RUN_HERE names `{line}`, which no doc shows"
    tokens = shlex.split(line)
    proc = subprocess.run(tokens, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_BOUND_S)
    assert proc.returncode == 0, f"`{line}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


# --- links ------------------------------------------------------------------------------------------------------


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (but - and _), spaces to -, repeats numbered."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and (not in_fence or line.strip().startswith(in_fence)):
            in_fence = "" if in_fence else fence.group(1)
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def _links() -> list[tuple[str, str, Path]]:
    out = []
    for path in _doc_files(history=True):
        text = path.read_text(encoding="utf-8")
        for match in LINK.finditer(text):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            line = text.count("\n", 0, match.start()) + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", target, path))
    return out


LINKS = _links()


@pytest.mark.parametrize(("where", "target", "source"), LINKS, ids=[f"{w} {t}" for w, t, _ in LINKS])
def test_relative_links_point_to_files_and_headings_that_exist(where: str, target: str, source: Path) -> None:
    path, _, anchor = target.partition("#")
    file = (source.parent / path).resolve() if path else source
    assert file.is_relative_to(ROOT), f"{where}: {target} points outside the repository (a clone has no such file)"
    assert file.exists(), f"{where}: {target}: no such file"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(file), f"{where}: {target}: {file.relative_to(ROOT)} has no heading #{anchor}"


# --- the run's output as the docs show it ------------------------------------------------------------------------


def _shown_stages(path: Path) -> list[tuple[int, str]]:
    """(number, title) of each `[n] Title: ...` line in the plain fenced blocks of a page (make run's output)."""
    stages, open_fence, plain = [], "", False
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and not open_fence:
            open_fence, plain = fence.group(1), not fence.group(2)
            continue
        if open_fence and line.strip().startswith(open_fence):
            open_fence = ""
            continue
        stage = re.match(r"^\[(\d+)\]\s+(.+)$", line) if open_fence and plain else None
        if stage:
            stages.append((int(stage.group(1)), re.split(r"[:(]", stage.group(2))[0].strip()))
    return stages


@pytest.mark.parametrize("page", ["README.md", "docs/rehearsal.md"])
def test_make_run_output_shown_names_stages_the_run_prints(page: str) -> None:
    """The excerpt of make run's output: each stage title is one the local run still prints, in order."""
    stages = _shown_stages(ROOT / page)
    assert stages, f"{page} shows no make run output"
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "recsys").rglob("*.py"))
    numbers = [n for n, _ in stages]
    assert numbers == sorted(set(numbers)), f"{page}: stage numbers out of order: {numbers}"
    gone = [f"[{n}] {title}" for n, title in stages if title not in source]
    assert not gone, f"{page} shows stage(s) the local run no longer prints (recsys/): {gone}; copy a fresh run"


def test_the_check_finds_commands_and_links_in_the_docs() -> None:
    """Guard against an extractor that silently finds nothing (every test above would then pass)."""
    heads = {c.head for c in COMMANDS}
    assert {"make run", "make test", "curl", "recsys serve"} <= heads, sorted(heads)
    assert len(LINKS) > 20
