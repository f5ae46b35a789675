"""Alerts end to end: real guarded runs notify a real SMTP server, a real HTTP server and SNS
(through moto), say what failed and what to do next, never leak a password, and never change
a run's outcome when a channel is down."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlguard import Config
from etlguard.alerts import compose, notify
from etlguard.errors import EXIT_AUDIT_FAILED, EXIT_ETL_FAILED, EXIT_OK, ConfigError
from etlguard.run import RunResult

from alertlib import FAIL, SUCCEED, HttpSink, SmtpSink, closed_port, http_server, smtp_server, warehouse
from conftest import Backend
from support import cli


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def web() -> Iterator[HttpSink]:
    with http_server() as sink:
        yield sink


@pytest.fixture(autouse=True)
def no_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLGUARD_URL", raising=False)


def mailto(smtp: SmtpSink, auth: str = "") -> str:
    return f"mailto://{auth}127.0.0.1:{smtp.port}?to=oncall@example.com&from=etl@example.com&mode=insecure"


# -- a rolled-back run, by email and webhook ----------------------------------------------------------


def test_a_rolled_back_run_emails_what_failed_and_what_to_do(duck: Backend, smtp: SmtpSink) -> None:
    tables = warehouse(duck)
    guard = duck.guard(tables, job_name="nightly-dbt", alerts={"channels": [{"apprise": mailto(smtp)}]})

    result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["oncall@example.com"]
    assert mail.subject == f"[etlguard] nightly-dbt run {result.run_id} ROLLED BACK: ETL exited with status 3"
    text = mail.text
    assert f"etlguard run {result.run_id} of job nightly-dbt: ROLLED BACK" in text
    assert f"Protected tables (2): {tables[0]}, {tables[1]}" in text
    assert "the ETL exited with status 3" in text
    assert f"Rolled back: {tables[0]}, {tables[1]}" in text
    assert f"Verified against the snapshot checksums: {tables[0]}, {tables[1]}" in text
    assert "loading tenants" in text  # the ETL's last output lines
    assert f"Details: `etlguard show {result.run_id}`" in text
    assert result.notes == [f"alert sent via email mailto://127.0.0.1:{smtp.port}"]
    [run] = guard.runs(result.run_id)
    assert run["details"]["notes"] == result.notes


def test_a_failed_audit_posts_json_with_the_numbers(duck: Backend, web: HttpSink) -> None:
    tables = warehouse(duck)
    guard = duck.guard(
        tables,
        job_name="nightly-dbt",
        audits=[{"table": tables[0], "min_rows": 100}],
        alerts={"channels": [{"webhook": web.url + "/etl", "headers": {"X-Team": "data"}}]},
    )

    result = guard.run(SUCCEED)

    assert result.exit_code == EXIT_AUDIT_FAILED
    [request] = web.requests
    assert (request.method, request.path) == ("POST", "/etl")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Team"] == "data"
    doc = json.loads(request.body)
    assert doc["subject"] == (
        f"[etlguard] nightly-dbt run {result.run_id} ROLLED BACK: audit {tables[0]} min_rows failed"
    )
    assert doc["status"] == "audit_failed" and doc["exit_code"] == EXIT_AUDIT_FAILED
    assert doc["outcomes"] == ["audit_failed", "rolled_back"]
    assert doc["protected"] == tables and doc["rolled_back"] == tables and doc["rollback_verified"] == tables
    [audit] = [a for a in doc["audits"] if not a["ok"]]
    assert audit["values"] == {"rows": 3, "min_rows": 100}
    assert doc["next_step"].endswith(f"Details: `etlguard show {result.run_id}`")


def test_text_webhooks_get_the_subject_and_body(duck: Backend, web: HttpSink) -> None:
    tables = warehouse(duck)
    guard = duck.guard(tables, alerts={"channels": [{"webhook": web.url, "format": "text"}]})

    result = guard.run(FAIL)

    [request] = web.requests
    assert request.headers["Content-Type"].startswith("text/plain")
    body = request.body.decode()
    assert body.startswith(
        f"[etlguard] etlguard run {result.run_id} ROLLED BACK: ETL exited with status 3\n\n"
    )
    assert f"Rolled back: {tables[0]}, {tables[1]}" in body


# -- which outcomes notify ---------------------------------------------------------------------------


def test_success_is_quiet_unless_asked_for(duck: Backend, web: HttpSink) -> None:
    tables = warehouse(duck)
    quiet = duck.guard(tables, alerts={"channels": [{"webhook": web.url + "/quiet"}]})
    loud = duck.guard(tables, alerts={"on": ["succeeded"], "channels": [{"webhook": web.url + "/loud"}]})

    assert quiet.run(SUCCEED).exit_code == EXIT_OK
    result = loud.run(SUCCEED)

    assert [r.path for r in web.requests] == ["/loud"]
    doc = json.loads(web.requests[0].body)
    assert doc["subject"] == f"[etlguard] etlguard run {result.run_id} succeeded"
    assert doc["outcomes"] == ["succeeded"]


def _result(status: str, **fields: Any) -> RunResult:
    base: dict[str, Any] = {
        "run_id": 7,
        "status": status,
        "exit_code": 0,
        "command": ["dbt", "run", "--target", "prod"],
        "target": "mysql://etl:***@aurora.example:3306",
        "protected": ["gold.moveouts", "silver.tenant_status_history"],
        "snapshot_ids": [41, 42],
    }
    return RunResult(**{**base, **fields})


def test_a_failed_rollback_notifies_every_channel_with_the_recovery_command(tmp_path: Path) -> None:
    path = tmp_path / "prod.yml"
    with http_server() as web:
        config = Config.from_dict(
            {
                "target": "duckdb:///w.duckdb",
                "job_name": "nightly-dbt",
                "alerts": {
                    "on": ["succeeded"],
                    "channels": [
                        {"webhook": web.url + "/a"},
                        {"webhook": web.url + "/b", "on": ["audit_failed"]},
                    ],
                },
            },
            path=path,
        )
        failed = _result(
            "rollback_failed",
            exit_code=20,
            recovery_command="etlguard restore --snapshot 41 --snapshot 42",
            message="the rollback failed: lost connection; a person must act",
        )
        rolled_back = _result("etl_failed", exit_code=10)

        deliveries = notify(config, failed)
        quiet = notify(config, rolled_back)

    assert [d.ok for d in deliveries] == [True, True] and quiet == []
    assert sorted(r.path for r in web.requests) == ["/a", "/b"]
    doc = json.loads(web.requests[0].body)
    assert doc["subject"] == "[etlguard] nightly-dbt run 7 ROLLBACK FAILED, ACTION NEEDED"
    config_arg = f"--config {path.resolve()}"
    assert doc["next_step"] == (
        f"ACTION NEEDED: run `etlguard restore {config_arg} --snapshot 41 --snapshot 42`, "
        f"then check the tables with `etlguard show {config_arg} 7`."
    )
    assert doc["next_step"] in compose(config, failed).body


def test_dbt_failures_name_the_model_in_the_subject() -> None:
    from etlguard.dbt import NodeResult

    config = Config.from_dict({"target": "duckdb:///w.duckdb", "job_name": "nightly-dbt"})
    result = _result(
        "etl_failed",
        exit_code=10,
        dbt_failures=[
            NodeResult("model.proj.moveouts", "error", "Syntax error near 'FORM'\nline 2"),
            NodeResult("model.proj.moveout_notices", "skipped", ""),
        ],
        rolled_back=["gold.moveouts", "silver.tenant_status_history"],
        rollback_verified=["gold.moveouts", "silver.tenant_status_history"],
    )

    message = compose(config, result)

    assert message.subject == "[etlguard] nightly-dbt run 7 ROLLED BACK: moveouts failed"
    assert "  dbt: model.proj.moveouts error: Syntax error near 'FORM'" in message.body
    assert "  dbt: model.proj.moveout_notices skipped" in message.body


# -- failures of the alert itself ------------------------------------------------------------------


def test_unreachable_channels_leave_the_outcome_alone_and_leave_a_note(duck: Backend) -> None:
    tables = warehouse(duck)
    port = closed_port()
    guard = duck.guard(
        tables,
        alerts={
            "channels": [
                {
                    "apprise": f"mailto://127.0.0.1:{port}?to=oncall@example.com&from=etl@example.com&mode=insecure"
                },
                {"webhook": "http://127.0.0.1:1/etl"},
                {"webhook": "http://127.0.0.1:1/etl", "name": "ops hook"},
            ]
        },
    )

    result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED and result.status == "etl_failed"
    assert result.rollback_verified == tables
    assert [n.split(" failed: ")[0] for n in result.notes] == [
        f"alert via email mailto://127.0.0.1:{port}",
        "alert via webhook http://127.0.0.1:1",
        "alert via ops hook",
    ]
    assert "Connection error" in result.notes[0]
    assert "Connection refused" in result.notes[1]
    [run] = guard.runs(result.run_id)
    assert run["status"] == "etl_failed" and run["details"]["notes"] == result.notes


def test_a_webhook_that_answers_an_error_is_a_failed_delivery(duck: Backend) -> None:
    tables = warehouse(duck)
    with http_server(status=500) as web:
        result = duck.guard(tables, alerts={"channels": [{"webhook": web.url}]}).run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    assert len(web.requests) == 1
    assert result.notes == [f"alert via webhook {web.url} failed: HTTP Error 500: Internal Server Error"]


def test_a_webhook_that_says_try_again_is_retried(duck: Backend) -> None:
    tables = warehouse(duck)
    with http_server() as web:
        web.first = [503, 502]  # a gateway restarting behind the receiver
        result = duck.guard(tables, alerts={"channels": [{"webhook": web.url}]}).run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    assert len(web.requests) == 3
    assert web.requests[0].body == web.requests[2].body
    assert result.notes == [f"alert sent via webhook {web.url}"]


def test_a_pushgateway_that_stays_unavailable_is_a_note_after_three_retries(duck: Backend) -> None:
    tables = warehouse(duck)
    with http_server(status=503) as gateway:
        result = duck.guard(tables, metrics={"pushgateway": gateway.url}).run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    assert len(gateway.requests) == 4
    assert result.notes == ["metrics to the Pushgateway failed: HTTP Error 503: Service Unavailable"]


# -- secrets --------------------------------------------------------------------------------------


@pytest.mark.mariadb
def test_no_password_is_ever_sent(
    maria: Backend, smtp: SmtpSink, web: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = warehouse(maria)
    user, db_password = f"etl_{maria.tag}", f"Db-{uuid.uuid4().hex[:12]}"
    smtp_password, token = f"Smtp-{uuid.uuid4().hex[:12]}", f"Tok{uuid.uuid4().hex}"
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{db_password}'")
    try:
        maria.sql(f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'")
        monkeypatch.setenv("SMTP_PASSWORD", smtp_password)
        monkeypatch.setenv("HOOK_TOKEN", token)
        url = f"mariadb+pymysql://{user}:{db_password}@127.0.0.1:3306"
        leaky = (
            f"print('connecting to {url} with {db_password}, mail {smtp_password}, token {token}'); "
            "import sys; sys.exit(4)"
        )
        guard = maria.guard(
            tables,
            target=url,
            alerts={
                "channels": [
                    {"apprise": mailto(smtp, "etl:${SMTP_PASSWORD}@")},
                    {"webhook": web.url, "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}},
                    {"webhook": web.url, "format": "text"},
                    {"webhook": f"http://etl:{db_password}@127.0.0.1:1/"},
                ]
            },
        )

        result = guard.run([sys.executable, "-c", leaky])
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")

    assert result.exit_code == EXIT_ETL_FAILED
    assert smtp.logins == [(b"etl", smtp_password.encode())]  # the password was used, not sent
    assert web.requests[0].headers["Authorization"] == f"Bearer {token}"
    sent = [smtp.mails[0].raw.decode(), smtp.mails[0].text, *(r.body.decode() for r in web.requests)]
    sent.append(json.dumps(result.notes))
    assert len(sent) == 5
    for text in sent:
        assert "connecting to mariadb+pymysql://" in text or text.startswith("[")
        for secret in (db_password, smtp_password, token):
            assert secret not in text
    assert f"connecting to mariadb+pymysql://{user}:***@127.0.0.1:3306 with ***, mail ***, token ***" in (
        smtp.mails[0].text
    )


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"alerts": {"emial": "x"}}, "unknown config key 'alerts.emial'; known keys are: on, channels"),
        (
            {"alerts": {"on": ["rolledback"]}},
            "config key 'alerts.on[0]' must be one of: succeeded, rolled_back",
        ),
        ({"alerts": {"channels": {"sns": "x"}}}, "config key 'alerts.channels' must be a list of channels"),
        (
            {"alerts": {"channels": [{"email": "x"}]}},
            "alerts.channels[0] must have exactly one of: sns, apprise",
        ),
        (
            {"alerts": {"channels": [{"sns": "etl-alerts"}]}},
            "config key 'alerts.channels[0].sns' must be a topic ARN",
        ),
        (
            {"alerts": {"channels": [{"apprise": "nosuch://x"}]}},
            "config key 'alerts.channels[0].apprise' is not a URL",
        ),
        (
            {"alerts": {"channels": [{"webhook": "ftp://x"}]}},
            "config key 'alerts.channels[0].webhook' must be an http",
        ),
        (
            {"alerts": {"channels": [{"webhook": "http://x", "fromat": "json"}]}},
            "unknown config key 'alerts.channels[0].fromat'",
        ),
        (
            {"alerts": {"channels": [{"webhook": 5}]}},
            "config key 'alerts.channels[0].webhook' must be a str, not int",
        ),
        (
            {"alerts": {"channels": [{"webhook": "http://${NO_SUCH_VAR}/"}]}},
            "alerts.channels[0].webhook refers to ${NO_SUCH_VAR}, which is not set",
        ),
        ({"job_name": ""}, "config key 'job_name' must be a name of 1 to 255 characters"),
        (
            {"metrics": {"cloudwatch": {"namespace": "AWS/Glue"}}},
            "config key 'metrics.cloudwatch.namespace' must be",
        ),
        ({"metrics": {"prometheus": "/x"}}, "unknown config key 'metrics.prometheus'"),
        ({"metrics": {"pushgateway": 9091}}, "config key 'metrics.pushgateway' must be a str, not int"),
    ],
)
def test_config_mistakes_are_one_line_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"target": "duckdb:///w.duckdb", **section})
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_full_example_config_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret-pw")
    config = Config.from_dict(
        {
            "target": "duckdb:///w.duckdb",
            "job_name": "nightly-dbt",
            "alerts": {
                "on": ["rolled_back", "rollback_failed", "audit_failed", "snapshot_failed"],
                "channels": [
                    {"sns": "arn:aws:sns:ap-northeast-1:123456789012:etl-alerts", "region": "ap-northeast-1"},
                    {"apprise": "mailtos://user:${SMTP_PASSWORD}@smtp.example.com?to=oncall@example.com"},
                    {"apprise": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#etl"},
                    {"webhook": "https://hooks.example.com/etl", "format": "json"},
                ],
            },
            "metrics": {
                "cloudwatch": {"namespace": "etlguard", "region": "ap-northeast-1"},
                "prometheus_file": "/var/lib/node_exporter/textfile/etlguard.prom",
                "pushgateway": "http://pushgateway:9091",
            },
        }
    )
    assert [c.label for c in config.alerts.channels] == [
        "sns arn:aws:sns:ap-northeast-1:123456789012:etl-alerts",
        "email mailtos://smtp.example.com",
        "slack slack://t1jj3t3l2",
        "webhook https://hooks.example.com",
    ]
    assert (
        config.alerts.channels[1].address == "mailtos://user:s3cret-pw@smtp.example.com?to=oncall@example.com"
    )
    assert "s3cret-pw" in config.alerts.secrets.values
    assert "TIiajkdnlazkcOXrIdevi7FQ" in config.alerts.secrets.values
    assert "s3cret-pw" not in repr(config)


# -- SNS, through moto ---------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def test_sns_delivers_the_subject_and_body(duck: Backend, aws: None) -> None:
    import boto3

    sns = boto3.client("sns", region_name="ap-northeast-1")
    sqs = boto3.client("sqs", region_name="ap-northeast-1")
    topic = sns.create_topic(Name="etl-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="oncall")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    tables = warehouse(duck)
    guard = duck.guard(tables, job_name="nightly-dbt", alerts={"channels": [{"sns": topic}]})

    result = guard.run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    assert result.notes == [f"alert sent via sns {topic}"]
    [received] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(received["Body"])
    assert (
        envelope["Subject"]
        == f"[etlguard] nightly-dbt run {result.run_id} ROLLED BACK: ETL exited with status 3"
    )
    assert f"Rolled back: {tables[0]}, {tables[1]}" in envelope["Message"]
    assert f"`etlguard show {result.run_id}`" in envelope["Message"]


def test_sns_to_a_missing_topic_is_a_note(duck: Backend, aws: None) -> None:
    tables = warehouse(duck)
    topic = "arn:aws:sns:ap-northeast-1:123456789012:no-such-topic"
    result = duck.guard(tables, alerts={"channels": [{"sns": topic}]}).run(FAIL)

    assert result.exit_code == EXIT_ETL_FAILED
    [note] = result.notes
    assert note.startswith(f"alert via sns {topic} failed: ") and "NotFound" in note


# -- etlguard alert test -------------------------------------------------------------------------


def test_alert_test_reports_every_channel(
    duck: Backend, web: HttpSink, smtp: SmtpSink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = duck.write_config(
        tmp_path / "good.yml",
        ["gold.x"],
        job_name="nightly-dbt",
        alerts={"on": ["succeeded"], "channels": [{"apprise": mailto(smtp)}, {"webhook": web.url + "/t"}]},
    )
    bad = duck.write_config(
        tmp_path / "bad.yml",
        ["gold.x"],
        alerts={
            "channels": [{"webhook": web.url + "/t"}, {"webhook": "http://127.0.0.1:1/t", "name": "ops"}]
        },
    )

    ok = cli(capsys, "alert", "test", "-c", str(good))
    failed = cli(capsys, "alert", "test", "-c", str(bad), "--json")

    assert ok.code == 0, ok
    assert ok.out.splitlines() == [
        f"sent    email mailto://127.0.0.1:{smtp.port}",
        f"sent    webhook {web.url}",
    ]
    assert smtp.mails[0].subject == "[etlguard] nightly-dbt TEST: alert channel check"
    assert json.loads(web.requests[0].body)["test"] is True
    assert failed.code == 1
    report = json.loads(failed.out)
    assert [(d["channel"], d["ok"]) for d in report] == [(f"webhook {web.url}", True), ("ops", False)]
    assert "Connection refused" in report[1]["error"]


def test_alert_test_without_channels_says_what_to_add(
    duck: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = duck.write_config(tmp_path / "etlguard.yml", ["gold.x"])
    result = cli(capsys, "alert", "test", "-c", str(path))
    assert result.code == 2  # a configuration problem (exit 2), not a failed send
    assert result.err_lines == [
        "etlguard: error: no alert channels configured; add them under alerts: channels: in the config"
    ]


def test_an_empty_on_list_still_reports_failed_rollbacks() -> None:
    config = Config.from_dict(
        {
            "target": "duckdb:///w.duckdb",
            "alerts": {"channels": [{"webhook": "http://127.0.0.1:1/", "on": []}]},
        }
    )
    [channel] = config.alerts.channels
    assert not channel.wants({"rolled_back", "etl_failed"}, config.alerts.on)
    assert channel.wants({"rollback_failed"}, config.alerts.on)
