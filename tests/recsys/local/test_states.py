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
    with pytest.raises(DefinitionError, match="Map"):
        Interpreter({"StartAt": "M", "States": {"M": {"Type": "Map", "End": True}}}, lambda r, p: ({}, ""))


def test_state_lines_group_consecutive_states_about_one_subject_and_count_caught_branches():
    from recsys.local.states import Step, state_lines

    steps = [Step("", "Jobs", "Parallel"), Step("Jobs[0]/", "Run a", "Task", "caught States.TaskFailed -> x"),
             Step("Jobs[1]/", "Run b", "Task"), Step("", "Start c1", "Task"), Step("", "Wait c1", "Wait"),
             Step("", "c1 done", "Pass"), Step("", "Drop f", "Task"), Step("", "Build f", "Task"),
             Step("", "End", "Succeed")]  # fmt: skip
    expected = "states: Jobs (2 branches, 1 caught) -> c1: Start, Wait, done -> f: Drop, Build -> End"
    assert state_lines(steps) == [expected]
    assert len(state_lines(steps, width=40)) > 1
