"""The ASL interpreter: the semantics the curation workflow relies on, each checked on a small definition."""

from __future__ import annotations

import pytest

from recsys.local.states import DefinitionError, Interpreter, StatesError, apply_template, read_path


def _run(definition: dict, data, resolve=None):
    resolve = resolve or (lambda resource, params: ({"echo": params, "resource": resource}, "ok"))
    return Interpreter(definition, resolve).execute(data)


def _task(**fields) -> dict:
    return {"Type": "Task", "Resource": "arn:aws:states:::svc:act", "End": True, **fields}


def test_a_task_without_result_path_replaces_its_input_and_a_null_one_keeps_it():
    replaced = _run({"StartAt": "T", "States": {"T": _task(Parameters={"x": 1})}}, {"keep": True})
    assert replaced.output == {"echo": {"x": 1}, "resource": "arn:aws:states:::svc:act"}
    kept = _run({"StartAt": "T", "States": {"T": _task(ResultPath=None)}}, {"keep": True})
    assert kept.output == {"keep": True}


def test_result_selector_result_path_and_output_path_apply_in_order():
    state = _task(Parameters={"v.$": "$.a"}, ResultSelector={"got.$": "$.echo.v"}, ResultPath="$.r", OutputPath="$.r")
    assert _run({"StartAt": "T", "States": {"T": state}}, {"a": 7}).output == {"got": 7}


def test_a_catch_matches_task_failed_and_writes_the_error_where_its_result_path_says():
    def fail(resource, params):
        raise StatesError("States.TaskFailed", "no objects")

    definition = {
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "r", "Next": "Never",
                  "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}]},
            "Never": {"Type": "Fail"},
            "Caught": {"Type": "Pass", "Parameters": {"why.$": "$.error.Cause", "in.$": "$.a"}, "End": True},
        },
    }  # fmt: skip
    done = _run(definition, {"a": 1}, fail)
    assert done.status == "SUCCEEDED" and done.output == {"why": "no objects", "in": 1}
    assert [s.name for s in done.steps] == ["T", "Caught"] and done.steps[0].note.startswith("caught States.TaskFailed")


def test_an_uncaught_error_fails_the_execution_with_its_name_and_cause():
    done = _run({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "why"}}}, {})
    assert (done.status, done.error, done.cause) == ("FAILED", "Boom", "why")


def test_parallel_outputs_one_entry_per_branch_and_choice_loops_until_its_rule_matches():
    calls = []

    def state(resource, params):
        calls.append(resource)
        return {"State": "READY" if len(calls) >= 3 else "RUNNING"}, ""

    branch = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"b": 1}, "End": True}}}
    definition = {
        "StartAt": "Par",
        "States": {
            "Par": {"Type": "Parallel", "Branches": [branch, branch], "ResultPath": "$.branches", "Next": "Get"},
            "Get": {"Type": "Task", "Resource": "r", "ResultPath": "$.c", "Next": "Ready?"},
            "Ready?": {"Type": "Choice", "Default": "Wait",
                       "Choices": [{"Variable": "$.c.State", "StringEquals": "READY", "Next": "Done"}]},
            "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Get"},
            "Done": {"Type": "Succeed"},
        },
    }  # fmt: skip
    done = _run(definition, {}, state)
    assert done.output["branches"] == [{"b": 1}, {"b": 1}]
    assert len(calls) == 3 and [s.name for s in done.steps].count("Wait") == 2


def test_parameters_take_paths_and_intrinsic_functions_and_a_missing_path_is_a_runtime_error():
    data = {"q": {"data": [{"VarCharValue": "0.25"}]}}
    assert apply_template({"Value.$": "States.StringToJson($.q.data[0].VarCharValue)", "k": "v"}, data, {}) == {
        "Value": 0.25, "k": "v"}  # fmt: skip
    assert read_path({"a": [{"x": 1}, {"x": 2}]}, "$.a[*].x") == [1, 2]
    with pytest.raises(StatesError, match="States.Runtime"):
        read_path({}, "$.missing")


def test_state_types_it_does_not_interpret_are_refused_before_running():
    with pytest.raises(DefinitionError, match="state 'M': state type 'Activity'"):
        Interpreter({"StartAt": "M", "States": {"M": {"Type": "Activity", "End": True}}}, lambda r, p: ({}, ""))


def test_an_inline_map_runs_each_item_through_its_processor_in_order_and_a_distributed_one_is_refused():
    processor = {"StartAt": "T", "States": {"T": _task()}}
    state = {
        "Type": "Map",
        "ItemsPath": "$.tables",
        "ItemSelector": {"table.$": "$$.Map.Item.Value", "db.$": "$.db"},
        "ItemProcessor": {**processor, "ProcessorConfig": {"Mode": "INLINE"}},
        "ResultPath": "$.out",
        "End": True,
    }
    done = _run({"StartAt": "M", "States": {"M": state}}, {"tables": ["a", "b"], "db": "d"})
    assert [r["echo"] for r in done.output["out"]] == [{"table": "a", "db": "d"}, {"table": "b", "db": "d"}]
    distributed = {**state, "ItemProcessor": {**processor, "ProcessorConfig": {"Mode": "DISTRIBUTED"}}}
    with pytest.raises(DefinitionError, match="ProcessorConfig"):
        Interpreter({"StartAt": "M", "States": {"M": distributed}}, lambda r, p: ({}, ""))
    with pytest.raises(DefinitionError, match="state 'M': field ItemReader"):
        Interpreter({"StartAt": "M", "States": {"M": {**state, "ItemReader": {}}}}, lambda r, p: ({}, ""))


def test_state_lines_group_consecutive_states_about_one_subject_and_count_caught_branches():
    from recsys.local.states import Step, state_lines

    steps = [Step("", "Jobs", "Parallel"), Step("Jobs[0]/", "Run a", "Task", "caught States.TaskFailed -> x"),
             Step("Jobs[1]/", "Run b", "Task"), Step("", "Start c1", "Task"), Step("", "Wait c1", "Wait"),
             Step("", "c1 done", "Pass"), Step("", "Drop f", "Task"), Step("", "Build f", "Task"),
             Step("", "End", "Succeed")]  # fmt: skip
    expected = "states: Jobs (2 branches, 1 caught) -> c1: Start, Wait, done -> f: Drop, Build -> End"
    assert state_lines(steps) == [expected]
    assert len(state_lines(steps, width=40)) > 1


def _flaky(failures: int, error: str = "States.TaskFailed", seconds: float = 1.0):
    """A resolver that fails ``failures`` times with ``error``, then answers; each call takes ``seconds``."""
    calls = []

    def resolve(resource, params):
        calls.append(params)
        if len(calls) <= failures:
            raise StatesError(error, f"attempt {len(calls)}")
        return {"ok": len(calls)}, "done", seconds

    return resolve, calls


def test_retry_runs_the_task_again_and_counts_the_backoff_without_sleeping():
    resolve, calls = _flaky(2)
    state = _task(Retry=[{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "BackoffRate": 3,
                          "MaxAttempts": 3}])  # fmt: skip
    done = _run({"StartAt": "T", "States": {"T": state}}, {}, resolve)
    assert done.status == "SUCCEEDED" and done.output == {"ok": 3} and len(calls) == 3
    assert [s.waited for s in done.steps] == [2.0, 6.0, 0.0]  # 2 * 3 ** attempt
    assert done.waited == 8.0 and done.seconds == pytest.approx(9.0, abs=0.5)  # backoff + the run that answered
    assert "retry 1/3 after 2 s" in done.steps[0].note


def test_an_exhausted_retrier_hands_the_error_to_catch_and_max_delay_caps_the_backoff():
    resolve, calls = _flaky(10)
    retry = [{"ErrorEquals": ["Other.Error"], "MaxAttempts": 5},
             {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "BackoffRate": 10, "MaxAttempts": 2,
              "MaxDelaySeconds": 30}]  # fmt: skip
    definition = {"StartAt": "T", "States": {
        "T": _task(Retry=retry, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], End=None, Next="Never"),
        "Never": {"Type": "Succeed"}, "Caught": {"Type": "Pass", "End": True}}}  # fmt: skip
    del definition["States"]["T"]["End"]
    done = _run(definition, {}, resolve)
    assert done.status == "SUCCEEDED" and len(calls) == 3  # the first attempt and 2 retries
    assert [s.waited for s in done.steps[:3]] == [10.0, 30.0, 0.0]  # 100 s capped at MaxDelaySeconds 30
    assert done.steps[2].note.startswith("caught States.TaskFailed") and done.output["Cause"] == "attempt 3"


def test_max_attempts_zero_never_retries_and_an_unmatched_error_is_not_retried():
    for retry, error in (
        ([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}], "States.TaskFailed"),
        ([{"ErrorEquals": ["Glue.CrawlerRunningException"]}], "States.TaskFailed"),
    ):
        resolve, calls = _flaky(1, error)
        done = _run({"StartAt": "T", "States": {"T": _task(Retry=retry)}}, {}, resolve)
        assert done.status == "FAILED" and len(calls) == 1 and done.waited == 0


def test_a_task_past_its_timeout_seconds_fails_with_states_timeout_which_task_failed_does_not_catch():
    slow = lambda resource, params: ({}, "slow", 120)  # noqa: E731 - takes 120 s on the local clock
    catch = [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}]
    definition = {"StartAt": "T", "States": {"T": {**_task(TimeoutSeconds=60, Catch=catch)},
                                             "Caught": {"Type": "Succeed"}}}  # fmt: skip
    done = _run(definition, {}, slow)
    assert (done.status, done.error) == ("FAILED", "States.Timeout") and "more than its TimeoutSeconds 60" in done.cause
    definition["States"]["T"]["Catch"] = [{"ErrorEquals": ["States.Timeout"], "Next": "Caught"}]
    assert _run(definition, {}, slow).status == "SUCCEEDED"
    by_path = {"StartAt": "T", "States": {"T": _task(TimeoutSecondsPath="$.limit")}}
    assert _run(by_path, {"limit": 300}, slow).status == "SUCCEEDED"
    assert _run(by_path, {"limit": 100}, slow).error == "States.Timeout"


def test_the_definitions_timeout_seconds_ends_the_execution_and_no_catch_applies():
    definition = {"StartAt": "W", "TimeoutSeconds": 50, "States": {
        "W": {"Type": "Wait", "Seconds": 30, "Next": "T"},
        "T": _task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], Resource="r"),
        "Caught": {"Type": "Succeed"}}}  # fmt: skip
    ok = _run(definition, {}, lambda r, p: ({}, "", 10))
    assert ok.status == "SUCCEEDED" and ok.seconds == 40
    late = _run(definition, {}, lambda r, p: ({}, "", 30))
    assert (late.status, late.error) == ("FAILED", "States.Timeout") and "TimeoutSeconds 50" in late.cause


def test_wait_states_advance_the_local_clock_by_seconds_paths_and_timestamps():
    from datetime import UTC, datetime

    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Wait", "SecondsPath": "$.s", "Next": "B"},
        "B": {"Type": "Wait", "Timestamp": "2026-01-01T00:10:00Z", "Next": "C"},
        "C": {"Type": "Wait", "TimestampPath": "$.t", "End": True}}}  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = Interpreter(definition, lambda r, p: ({}, "")).execute({"s": 60, "t": "2026-01-01T00:05:00Z"}, start=start)
    assert [s.waited for s in done.steps] == [60.0, 540.0, 0.0]  # a timestamp already past waits nothing


def test_fail_error_path_and_the_context_object_carry_the_execution_input():
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass",
                "Parameters": {"source.$": "$$.Execution.Input.source", "state.$": "$$.State.Name"},
                "ResultPath": "$.ctx",
                "Next": "F",
            },
            "F": {"Type": "Fail", "ErrorPath": "$.ctx.source", "CausePath": "States.Format('in {}', $.ctx.state)"},
        },
    }
    done = _run(definition, {"source": "aws.events", "detail-type": "Scheduled Event"})
    assert (done.error, done.cause) == ("aws.events", "in P")


def test_more_intrinsic_functions_follow_aws_and_their_failures_are_intrinsic_failures():
    data = {"a": [1, 2, 2, 3], "s": "a.b+c"}
    template = {"u.$": "States.ArrayUnique($.a)", "g.$": "States.ArrayGetItem($.a, 3)",
                "p.$": "States.ArrayPartition($.a, 3)", "c.$": "States.ArrayContains($.a, 2)",
                "r.$": "States.ArrayRange(1, 9, 4)", "split.$": "States.StringSplit($.s, '.+')",
                "h.$": "States.Hash('x', 'SHA-256')", "b.$": "States.Base64Decode(States.Base64Encode('hi'))",
                "f.$": "States.Format('{} and {}', 1, true)"}  # fmt: skip
    assert apply_template(template, data, {}) == {
        "u": [1, 2, 3],
        "g": 3,
        "p": [[1, 2, 2], [3]],
        "c": True,
        "r": [1, 5, 9],
        "split": ["a", "b", "c"],
        "h": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        "b": "hi",
        "f": "1 and true",
    }
    with pytest.raises(StatesError, match="States.IntrinsicFailure"):
        apply_template({"x.$": "States.ArrayGetItem($.a, 9)"}, data, {})


def _refused(definition: dict, *fragments: str) -> None:
    with pytest.raises(DefinitionError) as info:
        Interpreter(definition, lambda r, p: ({}, ""))
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def _one(**state) -> dict:
    return {"StartAt": "S", "States": {"S": state}}


@pytest.mark.parametrize(
    ("definition", "fragments"),
    [
        ({**_one(**_task()), "QueryLanguage": "JSONata"}, ("the definition", "QueryLanguage", "JSONata")),
        (_one(**_task(QueryLanguage="JSONata")), ("state 'S'", "QueryLanguage")),
        (_one(**_task(Arguments={"x": "{% $states.input %}"})), ("state 'S'", "field Arguments", "JSONata")),
        (_one(**_task(Output="{% $states.result %}")), ("state 'S'", "field Output")),
        (_one(Type="Pass", Assign={"v": 1}, End=True), ("state 'S'", "field Assign", "variables")),
        (_one(**_task(HeartbeatSeconds=60)), ("state 'S'", "field HeartbeatSeconds")),
        (_one(**_task(Parameters={"v.$": "States.Frobnicate($.a)"})), ("state 'S'", "Parameters", "Frobnicate")),
        (
            _one(**_task(Parameters={"deep": {"v.$": "States.Format('{}', States.Nope(1))"}})),
            ("Parameters.deep", "States.Nope"),
        ),
        (_one(**_task(ResultSelector={"v.$": 5})), ("state 'S'", "ResultSelector", "v.$")),
        (
            _one(**_task(Parameters={"Name": {"Fn::Sub": "${AWS::StackName}-job"}})),
            ("state 'S'", "field Parameters", "unresolved CloudFormation Fn::Sub"),
        ),
        (_one(**_task(Parameters={"Arn": {"Ref": "Bucket"}})), ("field Parameters", "CloudFormation Ref")),
        (_one(**_task(Resource="arn:aws:states:::${Service}:run")), ("field Resource", "${Service}")),
        (_one(**_task(Resorce="x")), ("state 'S'", "field Resorce")),
        (_one(Type="Pass", Resource="r", End=True), ("field Resource", "not a field of a Pass state")),
        (_one(Type="Map", End=True), ("state 'S'", "ItemProcessor")),
        (_one(Type="Pass", Next="Nowhere"), ("state 'S'", "Next 'Nowhere'")),
        (_one(Type="Pass"), ("state 'S'", "neither Next nor End")),
        (_one(Type="Wait", End=True), ("state 'S'", "exactly one of Seconds")),
        (_one(**_task(Retry=[{"ErrorEquals": ["States.ALL"], "Intervalseconds": 2}])), ("Retry[0]", "Intervalseconds")),
        (_one(**_task(Retry=[{"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5}])), ("Retry[0]", "BackoffRate")),
        (_one(**_task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}])), ("Retry[0]", "States.ALL")),
        (_one(**_task(TimeoutSeconds=0)), ("state 'S'", "field TimeoutSeconds")),
        (
            _one(**_task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "S", "Output": "{% 1 %}"}])),
            ("Catch[0]", "field Output"),
        ),
        (_one(Type="Choice", Choices=[{"Condition": "{% true %}", "Next": "S"}]), ("Choices[0]", "Condition")),
        (
            _one(Type="Choice", Choices=[{"Variable": "$.a", "StringLike": "x", "Next": "S"}]),
            ("Choices[0]", "StringLike"),
        ),
        (
            {
                "StartAt": "P",
                "States": {"P": {"Type": "Parallel", "End": True, "Branches": [_one(**_task(Arguments={}))]}},
            },
            ("state 'P[0]/S'", "field Arguments"),
        ),
        ({"StartAt": "S", "States": {"S": _task()}, "Version": "1.0", "Extra": 1}, ("the definition", "field Extra")),
    ],
)
def test_jsonata_unknown_intrinsics_unresolved_cloudformation_and_unknown_shapes_are_refused_naming_state_and_field(
    definition, fragments
):
    _refused(definition, *fragments)


def test_a_refused_definition_runs_nothing():
    calls = []
    with pytest.raises(DefinitionError):
        Interpreter(
            {
                "StartAt": "A",
                "States": {
                    "A": {**{k: v for k, v in _task().items() if k != "End"}, "Next": "B"},
                    "B": _task(Arguments={}),
                },
            },  # fmt: skip
            lambda r, p: calls.append(r) or ({}, ""),
        )
    assert calls == []


def test_states_runtime_is_never_retried_or_caught_and_states_all_does_not_match_data_limit_exceeded():
    for error in ("States.Runtime", "States.DataLimitExceeded"):
        resolve, calls = _flaky(1, error)
        state = _task(Retry=[{"ErrorEquals": ["States.ALL"]}], Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}])
        done = _run({"StartAt": "T", "States": {"T": state, "C": {"Type": "Succeed"}}}, {}, resolve)
        assert (done.status, done.error, len(calls)) == ("FAILED", error, 1)
    resolve, _ = _flaky(1, "States.DataLimitExceeded")
    state = _task(Catch=[{"ErrorEquals": ["States.DataLimitExceeded"], "Next": "C"}])
    assert _run({"StartAt": "T", "States": {"T": state, "C": {"Type": "Succeed"}}}, {}, resolve).status == "SUCCEEDED"


def test_timestamp_comparisons_compare_instants_and_a_non_timestamp_is_no_match():
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Default": "No", "Choices": [
            {"Variable": "$.t", "TimestampLessThan": "2026-01-01T12:00:00Z", "Next": "Yes"}]},
        "Yes": {"Type": "Succeed"}, "No": {"Type": "Succeed"}}}  # fmt: skip
    taken = [_run(definition, {"t": t}).steps[0].note for t in
             ("2026-01-01T13:30:00+02:00", "2026-01-01T12:30:00Z", "yesterday")]  # fmt: skip
    assert taken == ["-> Yes", "-> No (default)", "-> No (default)"]  # 11:30 UTC is earlier, though "13" > "12"
