"""deploy/glue: the AWS Glue 5.0 job that runs `etlguard run -- dbt build`. The Terraform is
parsed (python-hcl2; `terraform validate` needs the AWS provider, which CI cannot download) and
checked: a Glue 5.0 Spark job (Python 3.11), the wheel installed from S3 through
--additional-python-modules, and an IAM role granting what etlguard calls. The job script runs
for real against S3 (moto) and DuckDB: a good run exits 0, a failed one rolls back and fails."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import hcl2
import pytest
from moto import mock_aws

from test_terraform import _clean  # python-hcl2's quotes and block marks, stripped

from conftest import Backend

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "deploy" / "glue"
SRC = ROOT / "src" / "etlguard"


def load(name: str) -> dict[str, Any]:
    with (MODULE / name).open(encoding="utf-8") as f:
        return _clean(hcl2.load(f))  # type: ignore[no-any-return]


def blocks(kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for block in load("main.tf")[kind]:
        for type_, named in block.items():
            for name, body in named.items():
                found[(type_, name)] = body
    return found


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in load("variables.tf")["variable"] for name, body in block.items()}


def test_the_recipe_has_its_files() -> None:
    assert {p.name for p in MODULE.iterdir()} >= {
        "main.tf", "variables.tf", "outputs.tf", "README.md", "glue_etlguard.py",
    }  # fmt: skip


def test_a_glue_5_spark_job_runs_the_script_with_the_wheel_from_s3() -> None:
    job = blocks("resource")[("aws_glue_job", "etlguard")]
    assert job["glue_version"] == "5.0"  # Python 3.11; Python shell jobs (3.9) cannot run etlguard
    [command] = job["command"]
    assert command["name"] == "glueetl" and command["python_version"] == "3"
    assert command["script_location"] == "s3://${var.s3_bucket}/${aws_s3_object.script.key}"
    assert job["role_arn"] == "${aws_iam_role.glue.arn}"
    [props] = job["execution_property"]
    assert props["max_concurrent_runs"] == 1
    arguments = load("main.tf")["locals"][0]
    modules = arguments["python_modules"]
    assert "s3://${var.s3_bucket}/${local.wheel_key}" in modules
    assert arguments["default_arguments"]["--additional-python-modules"] == "${local.python_modules}"
    for name in ("--etlguard_config", "--dbt_project", "--dbt_command"):
        assert name in arguments["default_arguments"]
    uploads = {name: body for (kind, name), body in blocks("resource").items() if kind == "aws_s3_object"}
    assert uploads["wheel"]["source"] == "${var.wheel_path}"
    assert uploads["script"]["source"] == "${path.module}/glue_etlguard.py"


# what etlguard calls through boto3 (found in its source), and the IAM action each one needs
CALLS = {
    "put_metric_data": "cloudwatch:PutMetricData",
    "publish": "sns:Publish",
    "get_secret_value": "secretsmanager:GetSecretValue",
    "generate_db_auth_token": "rds-db:connect",
    "put_object": "s3:PutObject",
}


def granted() -> dict[str, dict[str, Any]]:
    doc = blocks("data")[("aws_iam_policy_document", "etlguard")]
    statements = {s["sid"]: s for s in doc.get("statement", [])}
    for dynamic in doc.get("dynamic", []):
        for body in dynamic.values():
            [content] = body["content"]
            statements[content["sid"]] = content
    return statements


def test_the_role_grants_what_etlguard_calls_and_no_more() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    called = {action for method, action in CALLS.items() if re.search(rf"\.{method}\(", source)}
    assert {"cloudwatch:PutMetricData", "sns:Publish"} <= called  # metrics and alerts, at least
    statements = granted()
    actions = {a for s in statements.values() for a in s["actions"]}
    assert called <= actions
    assert actions - set(CALLS.values()) == {"s3:GetObject"}  # reading its own artifacts
    assert statements["PutMetrics"]["condition"][0]["values"] == ["${var.metrics_namespace}"]
    assert statements["ReadArtifacts"]["resources"] == ["${local.bucket_arn}/${local.prefix}/*"]
    # the optional grants are off unless their variable is set, and scoped to it
    for sid, variable in (
        ("PublishAlerts", "alert_topic_arn"),
        ("ReadDatabaseSecret", "db_secret_arn"),
        ("ConnectWithIamToken", "rds_iam_db_user"),
        ("WriteReport", "report_s3_prefix"),
    ):
        assert variables()[variable]["default"] is None, variable
        assert sid in statements
    assert statements["PublishAlerts"]["resources"] == ["${statement.value}"]
    policy = blocks("resource")[("aws_iam_role_policy", "etlguard")]
    assert policy["policy"] == "${data.aws_iam_policy_document.etlguard.json}"


def test_outputs_and_required_variables() -> None:
    outputs = {name for block in load("outputs.tf")["output"] for name in block}
    assert {"job_name", "role_arn", "additional_python_modules"} <= outputs
    required = {name for name, body in variables().items() if "default" not in body}
    assert required == {"job_name", "s3_bucket", "wheel_path", "config_path", "dbt_project_zip"}
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    example = readme.split("```hcl\n", 1)[1].split("```", 1)[0]
    [block] = _clean(hcl2.loads(example))["module"]
    [module] = block.values()
    assert required <= set(module) and set(module) - {"source"} <= set(variables())


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_is_clean() -> None:
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", str(MODULE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("glue_etlguard", MODULE / "glue_etlguard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ETL = """import sys, duckdb
conn = duckdb.connect({path!r})
if sys.argv[1] == "add":
    conn.execute("INSERT INTO gold.moveouts VALUES (100)")
else:
    conn.execute("DELETE FROM gold.moveouts")
    sys.exit(1)
"""


def test_the_job_script_runs_etlguard_from_s3_artifacts(duck: Backend, tmp_path: Path) -> None:
    duck.sql("CREATE SCHEMA gold")
    duck.sql("CREATE TABLE gold.moveouts AS SELECT range AS id FROM range(10)")
    config = duck.write_config(tmp_path / "etlguard.yml", protect=["gold.moveouts"])
    project = tmp_path / "dbt_project.zip"
    with zipfile.ZipFile(project, "w") as archive:
        archive.writestr("dbt_project.yml", "name: warehouse\n")
        archive.writestr("etl.py", ETL.format(path=str(duck.path)))
    glue = script()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.upload_file(str(config), "artifacts", "etlguard/etlguard.yml")
        s3.upload_file(str(project), "artifacts", "etlguard/dbt_project.zip")
        args = ["--JOB_NAME", "nightly", "--etlguard_config", "s3://artifacts/etlguard/etlguard.yml",
                "--dbt_project", "s3://artifacts/etlguard/dbt_project.zip"]  # fmt: skip
        good = glue.main([*args, "--dbt_command", f"{sys.executable} etl.py add"])
        bad = glue.main([*args, "--dbt_command", f"{sys.executable} etl.py wreck"])
    assert (good, bad) == (0, 10)  # the job run fails with etlguard's code: rolled back
    assert duck.sql("SELECT count(*) FROM gold.moveouts") == [(11,)]  # the good run's row, no more


def test_the_job_script_names_a_bad_uri() -> None:
    with pytest.raises(SystemExit, match=re.escape("'artifacts/etlguard.yml' is not an s3://bucket/key URI")):
        script().main(["--etlguard_config", "artifacts/etlguard.yml", "--dbt_project", "s3://a/b.zip"])
