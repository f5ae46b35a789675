"""deploy/terraform: the design note's layer 4, parsed (python-hcl2) and checked: each alarm
watches the metric etlguard (or Glue) really publishes, with the dimensions it really has,
and its actions go to the SNS topic that emails var.alert_email."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from etlguard.metrics import values
from etlguard.pitr import IAM_ACTIONS
from etlguard.run import RunResult

MODULE = Path(__file__).resolve().parent.parent / "deploy" / "terraform"


def _clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and marks blocks; strip both for plain comparisons."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def load(name: str) -> dict[str, Any]:
    with (MODULE / name).open(encoding="utf-8") as f:
        return _clean(hcl2.load(f))  # type: ignore[no-any-return]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for block in load("main.tf")["resource"]:
        for kind, named in block.items():
            for name, body in named.items():
                found[(kind, name)] = body
    return found


def alarms() -> dict[str, dict[str, Any]]:
    return {name: body for (kind, name), body in resources().items() if kind == "aws_cloudwatch_metric_alarm"}


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in load("variables.tf")["variable"] for name, body in block.items()}


TOPIC = "${aws_sns_topic.etl_alerts.arn}"


def test_the_module_has_its_files_and_an_example() -> None:
    assert {p.name for p in MODULE.iterdir()} >= {"main.tf", "variables.tf", "outputs.tf", "README.md"}
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    assert 'module "etl_alerts"' in readme and "alert_email" in readme


def test_the_topic_emails_the_alert_address() -> None:
    res = resources()
    assert ("aws_sns_topic", "etl_alerts") in res
    subscription = res[("aws_sns_topic_subscription", "etl_email_alert")]
    assert subscription["topic_arn"] == TOPIC
    assert subscription["protocol"] == "email"
    assert subscription["endpoint"] == "${var.alert_email}"


@pytest.mark.parametrize(
    ("alarm", "metric"), [("rollback_failures", "RollbackFailures"), ("runs_failed", "RunsFailed")]
)
def test_etlguard_alarms_watch_the_published_metrics(alarm: str, metric: str) -> None:
    body = alarms()[alarm]
    assert body["namespace"] == "${var.namespace}"
    assert variables()["namespace"]["default"] == "etlguard"
    assert body["metric_name"] == metric
    assert metric in values(RunResult(1, "ok", 0, [], "duckdb:///w"))  # a name etlguard publishes
    assert body["dimensions"] == {"JobName": "${var.job_name}"}  # exactly the set published for alarms
    assert (body["statistic"], body["threshold"], body["comparison_operator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    assert body["evaluation_periods"] == 1
    assert body["treat_missing_data"] == "notBreaching"  # no run in the period is not a failure
    assert body["alarm_actions"] == [TOPIC]


def test_the_glue_alarm_is_optional_and_uses_glues_dimensions() -> None:
    body = alarms()["glue_job_failure"]
    assert body["count"] == "${var.glue_job_name == null ? 0 : 1}"
    assert variables()["glue_job_name"]["default"] is None
    assert (body["namespace"], body["metric_name"]) == ("Glue", "glue.driver.aggregate.numFailedTasks")
    assert body["dimensions"] == {"JobName": "${var.glue_job_name}", "JobRunId": "ALL", "Type": "count"}
    assert (body["statistic"], body["threshold"], body["comparison_operator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    assert body["alarm_actions"] == [TOPIC]


def test_variables_and_outputs() -> None:
    variables_ = variables()
    assert {"alert_email", "job_name", "namespace", "glue_job_name"} <= set(variables_)
    assert "default" not in variables_["alert_email"] and "default" not in variables_["job_name"]
    outputs = {name for block in load("outputs.tf")["output"] for name in block}
    assert {"sns_topic_arn", "alarm_arns"} <= outputs


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_is_clean() -> None:
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", str(MODULE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_example_parses_and_sets_the_required_variables() -> None:
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    example = readme.split("```hcl\n", 1)[1].split("```", 1)[0]
    [block] = _clean(hcl2.loads(example))["module"]
    module = block["etl_alerts"]
    required = {name for name, body in variables().items() if "default" not in body}
    assert required <= set(module)
    assert set(module) - {"source"} <= set(variables())


def test_the_pitr_policy_grants_what_pitr_calls_and_deletes_only_clones() -> None:
    [block] = [b for b in load("main.tf")["data"] if "aws_iam_policy_document" in b]
    doc = block["aws_iam_policy_document"]["etlguard_pitr"]
    assert doc["count"] == "${var.pitr_cluster_identifier == null ? 0 : 1}"
    assert variables()["pitr_cluster_identifier"]["default"] is None
    statements = {s["sid"]: s for s in doc["statement"]}
    granted = {action for s in statements.values() for action in s["actions"]}
    assert granted == set(IAM_ACTIONS)  # exactly what etlguard.pitr calls
    deleting = [s for s in statements.values() if any("Delete" in a for a in s["actions"])]
    for s in deleting:
        assert all(":etlguard-pitr-*" in r for r in s["resources"]), s["resources"]
    assert resources()[("aws_iam_policy", "etlguard_pitr")]["policy"] == (
        "${data.aws_iam_policy_document.etlguard_pitr[0].json}"
    )
    outputs = {name for block in load("outputs.tf")["output"] for name in block}
    assert "pitr_policy_arn" in outputs
