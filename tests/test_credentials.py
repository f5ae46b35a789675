"""Credentials the way Aurora users hold them, with a password full of URL metacharacters:
percent-encoded in the URL, `credentials.password_env`, AWS Secrets Manager (moto), and a dbt
profiles.yml. Each path connects to the local MariaDB as a user whose password it is (and to
PostgreSQL as such a role: the local server trusts every login, so there only the user name and
the absence of leaks are proven), and no output, log line, catalog row, alert, JSON report or
HTML report holds any 3-character fragment of it, on success and on every error path.

RDS IAM tokens: moto's credentials sign a real token locally (botocore); the test checks its
host, port, user and region, and that it is sent as the password over TLS to a throwaway
mariadbd whose certificates the test makes with openssl. No MariaDB accepts an RDS token, so the
login itself is refused; that refusal is checked to be one clean line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
import yaml
from moto import mock_aws

from etlguard.config import Config

from alertlib import HttpSink, http_server
from conftest import MYSQL_HOST, MYSQL_PORT, Backend
from support import cli, tables_in

PASSWORD = "p@ss:w/rd#?%&"
WRONG = "&%?#dr/w:ss@p"  # the password reversed: shares no 3-character fragment with it
ALL_OUTCOMES = [
    "succeeded",
    "rolled_back",
    "etl_failed",
    "audit_failed",
    "snapshot_failed",
    "rollback_failed",
]


def fragments(secret: str) -> set[str]:
    return {secret[i : i + 3] for i in range(len(secret) - 2)} | {quote(secret, safe="")}


def leaks(texts: list[str], secret: str = PASSWORD) -> set[str]:
    joined = "\n".join(texts)
    return {f for f in fragments(secret) if f in joined}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ETLGUARD_URL", "ETLGUARD_CONFIG", "ETLGUARD_LOG_FORMAT", "DBT_PROFILES_DIR", "DBT_TARGET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Secrets Manager in moto, with fake credentials in the environment."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def secret(client: Any, value: str) -> str:
    return str(client.create_secret(Name=f"etl-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"])


@pytest.fixture
def maria_user(maria: Backend) -> Iterator[str]:
    """A MariaDB user whose password is PASSWORD, allowed to use the test's schemas only."""
    name = f"etl_{uuid.uuid4().hex[:8]}"
    for host in ("%", "localhost"):
        maria.sql(f"CREATE USER '{name}'@'{host.replace('%', '%%')}' IDENTIFIED BY %s", [PASSWORD])
        maria.sql(f"GRANT ALL ON `t{maria.tag}\\_%`.* TO '{name}'@'{host}'")
    try:
        yield name
    finally:
        for host in ("%", "localhost"):
            maria.sql(f"DROP USER IF EXISTS '{name}'@'{host}'")


@pytest.fixture
def webhook() -> Iterator[HttpSink]:
    with http_server() as sink:
        yield sink


def write(backend: Backend, sink: HttpSink, protect: list[str], **settings: Any) -> Path:
    alerts = {"on": ALL_OUTCOMES, "channels": [{"webhook": sink.url}]}
    return backend.write_config(backend.tmp_path / "etlguard.yml", protect, alerts=alerts, **settings)


def everything(
    backend: Backend, capsys: pytest.CaptureFixture[str], config: Path
) -> tuple[list[int], list[str]]:
    """snapshot, run, snapshots, report: their exit codes, and every text they left behind."""
    report, summary = backend.tmp_path / "report.html", backend.tmp_path / "run.json"
    results = [
        cli(capsys, "-v", "snapshot", "-c", config),
        cli(capsys, "-v", "run", "-c", config, "--json-report", summary, "--", sys.executable, "-c", "pass"),
        cli(capsys, "snapshots", "--json", "-c", config),
        cli(capsys, "report", "-c", config, "--html", report),
    ]
    rows = [
        repr(row)
        for name in tables_in(backend, backend.catalog_schema)
        for row in backend.sql(f"SELECT * FROM {backend.table(backend.catalog_schema, name)}")
    ]
    files = [p.read_text(encoding="utf-8") for p in (report, summary) if p.exists()]
    return [r.code for r in results], [r.out + r.err for r in results] + rows + files


def sent(sink: HttpSink) -> list[str]:
    return [r.body.decode("utf-8", "replace") + repr(r.headers) for r in sink.requests]


def dbt_project(tmp_path: Path, output: dict[str, Any]) -> Path:
    project = tmp_path / "dbt"
    project.mkdir()
    (project / "dbt_project.yml").write_text(yaml.safe_dump({"name": "w", "profile": "w"}))
    (project / "profiles.yml").write_text(
        yaml.safe_dump({"w": {"target": "prod", "outputs": {"prod": output}}})
    )
    return project


# -- every credential path connects, and nothing carries the password --------------------------------


@pytest.mark.parametrize("path", ["url", "password_env", "secret_json", "secret_text", "profiles"])
def test_each_credential_path_connects_and_leaks_nothing(
    path: str,
    maria: Backend,
    maria_user: str,
    aws: Any,
    webhook: HttpSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gold = maria.create_schema("gold")
    maria.sql(f"CREATE TABLE {maria.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    maria.sql(f"INSERT INTO {maria.table(gold, 'facts')} VALUES (1), (2)")
    where = f"{MYSQL_HOST}:{MYSQL_PORT}"
    settings: dict[str, Any] = {"target": f"mariadb+pymysql://{maria_user}@{where}"}
    if path == "url":
        settings["target"] = f"mariadb+pymysql://{maria_user}:{quote(PASSWORD, safe='')}@{where}"
    elif path == "password_env":
        monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
        settings["credentials"] = {"password_env": "ETL_DB_PASSWORD"}
    elif path == "secret_json":  # as RDS writes it: the URL names nothing but the dialect
        fields = {"username": maria_user, "password": PASSWORD, "host": MYSQL_HOST, "port": MYSQL_PORT}
        settings = {
            "target": "mariadb+pymysql://",
            "credentials": {"secret_arn": secret(aws, json.dumps(fields))},
        }
    elif path == "secret_text":
        settings["credentials"] = {"secret_arn": secret(aws, PASSWORD)}
    else:
        monkeypatch.setenv("WH_PASSWORD", PASSWORD)
        output = {
            "type": "mariadb",
            "server": MYSQL_HOST,
            "port": "{{ env_var('WH_PORT', '" + str(MYSQL_PORT) + "') | as_number }}",
            "username": maria_user,
            "password": "{{ env_var('WH_PASSWORD') }}",
            "schema": gold,
        }
        settings = {"target": "dbt", "dbt": {"project_dir": str(dbt_project(maria.tmp_path, output))}}
    config = write(maria, webhook, [f"{gold}.*"], **settings)

    codes, texts = everything(maria, capsys, config)

    assert codes == [0, 0, 0, 0], texts[:4]
    assert Config.load(config).target.user == maria_user
    assert len(webhook.requests) == 1 and b'"succeeded"' in webhook.requests[0].body
    assert leaks(texts + sent(webhook)) == set()


@pytest.mark.parametrize("path", ["password_env", "secret_json"])
def test_postgresql_paths_leak_nothing(
    path: str,
    pg: Backend,
    aws: Any,
    webhook: HttpSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    role = f"etl_{uuid.uuid4().hex[:8]}"
    pg.sql(f"CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    try:
        gold = pg.create_schema("gold")
        pg.sql(f"CREATE TABLE {pg.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
        if path == "password_env":
            monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
            settings = {
                "target": f"postgresql+psycopg://{role}@{pg.host}:{pg.port}/postgres",
                "credentials": {"password_env": "ETL_DB_PASSWORD"},
            }
        else:
            fields = {
                "username": role,
                "password": PASSWORD,
                "host": pg.host,
                "port": str(pg.port),
                "dbname": "postgres",
            }
            settings = {
                "target": "postgresql+psycopg://",
                "credentials": {"secret_arn": secret(aws, json.dumps(fields))},
            }
        config = write(pg, webhook, [f"{gold}.*"], **settings)
        codes, texts = everything(pg, capsys, config)
        owner = pg.sql(
            "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'snapshots'",
            [pg.catalog_schema],
        )
    finally:
        pg.sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
        pg.sql(f'DROP OWNED BY "{role}"')
        pg.sql(f'DROP ROLE "{role}"')

    assert codes == [0, 0, 0, 0], texts[:4]
    assert owner == [(role,)]
    assert leaks(texts + sent(webhook)) == set()


# -- error paths: one line, the right exit code, nothing of the password ---------------------------------


def test_wrong_password_is_refused_in_one_line(
    maria: Backend,
    maria_user: str,
    webhook: HttpSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETL_DB_PASSWORD", WRONG)
    target = f"mariadb+pymysql://{maria_user}@{MYSQL_HOST}:{MYSQL_PORT}"
    config = write(maria, webhook, ["gold.*"], target=target, credentials={"password_env": "ETL_DB_PASSWORD"})

    listed = cli(capsys, "snapshots", "-c", config)
    ran = cli(capsys, "run", "-c", config, "--", sys.executable, "-c", "pass")

    assert (listed.code, ran.code) == (2, 2)
    assert listed.err_lines == [
        f"etlguard: error: mariadb://{maria_user}:***@{MYSQL_HOST}:{MYSQL_PORT} refused the login for "
        f"user {maria_user!r}: check the user name and password (from the URL, ${{VAR}} in it, or the "
        "credentials block)"
    ]
    texts = [listed.out, listed.err, ran.out, ran.err, *sent(webhook)]
    assert leaks(texts) == set() and leaks(texts, WRONG) == set()


def test_unreachable_host_is_exit_5_and_leaks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
    config = tmp_path / "etlguard.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "target": "mariadb+pymysql://etl@127.0.0.1:1?connect_retries=1&retry_backoff=0.01",
                "credentials": {"password_env": "ETL_DB_PASSWORD"},
            }
        )
    )

    result = cli(capsys, "-v", "snapshots", "-c", config)

    assert result.code == 5
    assert result.err_lines[-1].startswith("etlguard: error: cannot reach mariadb://etl:***@127.0.0.1:1: ")
    assert leaks([result.out, result.err]) == set()


def test_access_denied_on_a_schema_leaks_nothing(
    maria: Backend,
    maria_user: str,
    webhook: HttpSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forbidden = f"x{maria.tag}_gold"  # outside the user's grant on t<tag>_%
    maria.sql(f"CREATE DATABASE `{forbidden}`")
    try:
        maria.sql(f"CREATE TABLE `{forbidden}`.facts (id INTEGER PRIMARY KEY)")
        for host in ("%", "localhost"):  # it can read the table, and nothing more
            maria.sql(f"GRANT SELECT ON `{forbidden}`.* TO '{maria_user}'@'{host}'")
        monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
        target = f"mariadb+pymysql://{maria_user}@{MYSQL_HOST}:{MYSQL_PORT}"
        config = write(
            maria,
            webhook,
            [f"{forbidden}.facts"],
            target=target,
            credentials={"password_env": "ETL_DB_PASSWORD"},
        )
        ran = cli(capsys, "-v", "run", "-c", config, "--", sys.executable, "-c", "pass")
    finally:
        maria.sql(f"DROP DATABASE `{forbidden}`")

    assert ran.code == 2, ran.err
    assert ran.err_lines[-1].startswith(
        f"etlguard: error: the database user lacks ALTER on schema {forbidden}"
    )
    assert leaks([ran.out, ran.err, *sent(webhook)]) == set()


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            None,
            "cannot read secret {arn} (ResourceNotFoundException); check credentials.secret_arn, the "
            "region and the secretsmanager:GetSecretValue permission",
        ),
        (
            '{"username": "etl", "password": "' + PASSWORD + '"',
            'secret {arn} starts like JSON but is not valid JSON; store {{"username": ..., "password": ...}} '
            "or the bare password",
        ),
        (
            '{"username": "etl", "pass": "' + PASSWORD + '"}',
            'secret {arn} has no "password" text; store {{"username": ..., "password": ...}}',
        ),
    ],
    ids=["missing", "malformed_json", "no_password_field"],
)
def test_bad_secrets_are_one_line_errors_without_the_secret(
    stored: str | None, message: str, tmp_path: Path, aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = (
        secret(aws, stored) if stored else "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope-AbCdEf"
    )
    config = tmp_path / "etlguard.yml"
    config.write_text(
        yaml.safe_dump({"target": "mariadb+pymysql://etl@127.0.0.1:3306", "credentials": {"secret_arn": arn}})
    )

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    assert result.err_lines == ["etlguard: error: " + message.format(arn=arn)]
    assert leaks([result.out, result.err]) == set()


@pytest.mark.parametrize(
    ("credentials", "target", "message"),
    [
        (
            {"password_env": "ETL_DB_PASSWORD", "password": "x"},
            "mariadb+pymysql://etl@h",
            "credentials has both password_env and password; keep one way to get the password",
        ),
        (
            {"password_env": "ETL_DB_PASSWORD"},
            f"mariadb+pymysql://etl:{quote(PASSWORD, safe='')}@h",
            "the target URL has a password and credentials.password_env gives one too; remove the password "
            "from the URL",
        ),
        (
            {"password_env": "NOT_SET_ANYWHERE"},
            "mariadb+pymysql://etl@h",
            "credentials.password_env names NOT_SET_ANYWHERE, which is not set in the environment; export it "
            "before running etlguard",
        ),
        (
            {"secret_arn": "arn:aws:sns:eu-west-1:1:topic"},
            "mariadb+pymysql://etl@h",
            "credentials.secret_arn 'arn:aws:sns:eu-west-1:1:topic' is not a Secrets Manager ARN "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)",
        ),
        (
            {"iam_auth": True, "region": "eu-west-1"},
            "mysql+pymysql://etl@h",
            "credentials.iam_auth needs TLS: set credentials.ssl_ca to the RDS CA bundle (global-bundle.pem "
            "from https://truststore.pdx.amazonaws.com)",
        ),
        (
            {"password_env": "ETL_DB_PASSWORD"},
            "duckdb:///w.duckdb",
            "credentials apply to MySQL, MariaDB and PostgreSQL targets, not duckdb; remove the credentials block",
        ),
    ],
    ids=["two_sources", "url_and_block", "unset_variable", "not_a_secret_arn", "iam_without_tls", "duckdb"],
)
def test_credential_mistakes_are_one_line(
    credentials: dict[str, Any],
    target: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
    config = tmp_path / "etlguard.yml"
    config.write_text(yaml.safe_dump({"target": target, "credentials": credentials}))

    result = cli(capsys, "snapshots", "-c", config)

    assert result.code == 2
    assert result.err_lines == [f"etlguard: error: {message}"]
    assert leaks([result.out, result.err]) == set()


def test_password_env_is_not_passed_to_the_etl(
    maria: Backend,
    maria_user: str,
    webhook: HttpSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Like a ${VAR} in the URL, the password's variable is etlguard's, not the ETL's."""
    gold = maria.create_schema("gold")
    maria.sql(f"CREATE TABLE {maria.table(gold, 'facts')} (id INTEGER PRIMARY KEY)")
    monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
    target = f"mariadb+pymysql://{maria_user}@{MYSQL_HOST}:{MYSQL_PORT}"
    config = write(
        maria, webhook, [f"{gold}.*"], target=target, credentials={"password_env": "ETL_DB_PASSWORD"}
    )
    seen = maria.tmp_path / "seen.txt"
    probe = f"import os; open({str(seen)!r}, 'w').write(os.environ.get('ETL_DB_PASSWORD', 'unset'))"

    ran = cli(capsys, "run", "-c", config, "--", sys.executable, "-c", probe)

    assert ran.code == 0, ran.err
    assert seen.read_text() == "unset"


# -- TLS and RDS IAM tokens, on a throwaway mariadbd with certificates made here ----------------------


@pytest.fixture
def tls_server(mariadb_template: Path, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test server's certificates")
    certs = tmp_path / "certs"
    certs.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=etlguard test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=another CA",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
    )
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    from servers import make_server

    server = make_server(
        mariadb_template,
        tmp_path / "mariadb",
        [
            f"--ssl-ca={certs / 'ca.pem'}",
            f"--ssl-cert={certs / 'server.pem'}",
            f"--ssl-key={certs / 'server.key'}",
        ],
    )
    try:
        yield server, certs / "ca.pem"
    finally:
        server.stop()


def test_tls_with_ssl_ca_verifies_the_server_for_a_user_that_requires_it(
    tls_server: tuple[Any, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, ca = tls_server
    server.sql("CREATE USER 'tls_etl'@'%%' IDENTIFIED BY %s REQUIRE SSL", [PASSWORD])
    server.sql("GRANT ALL ON *.* TO 'tls_etl'@'%'")
    server.sql("CREATE DATABASE gold")
    server.sql("CREATE TABLE gold.facts (id INTEGER PRIMARY KEY)")
    monkeypatch.setenv("ETL_DB_PASSWORD", PASSWORD)
    target = f"mariadb+pymysql://tls_etl@127.0.0.1:{server.port}"
    with_tls, wrong_ca = tmp_path / "tls.yml", tmp_path / "wrong-ca.yml"
    with_tls.write_text(
        yaml.safe_dump(
            {
                "target": target,
                "protect": ["gold.facts"],
                "credentials": {"password_env": "ETL_DB_PASSWORD", "ssl_ca": str(ca)},
            }
        )
    )
    other = {"password_env": "ETL_DB_PASSWORD", "ssl_ca": str(ca.parent / "other.pem")}
    wrong_ca.write_text(yaml.safe_dump({"target": target + "?connect_retries=0", "credentials": other}))

    ok = cli(capsys, "snapshot", "-c", with_tls)
    refused = cli(capsys, "snapshots", "-c", wrong_ca)

    assert ok.code == 0, ok.err
    assert "gold.facts" in ok.out and "verified" in ok.out
    assert refused.code == 2, refused.err
    assert refused.err_lines[-1].startswith(
        f"etlguard: error: TLS to mariadb://tls_etl:***@127.0.0.1:{server.port} failed: "
    )
    assert "CERTIFICATE_VERIFY_FAILED" in refused.err_lines[-1]
    assert refused.err_lines[-1].endswith(
        "set credentials.ssl_ca to the CA bundle that signed the server's certificate"
    )
    assert leaks([ok.out, ok.err, refused.out, refused.err]) == set()


def test_iam_token_is_made_for_the_target_and_sent_as_the_password_over_tls(
    tls_server: tuple[Any, Path], aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, ca = tls_server
    server.sql("CREATE USER 'iam_etl'@'%' IDENTIFIED BY 'not-a-token' REQUIRE SSL")
    config = tmp_path / "etlguard.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "target": f"mysql+pymysql://iam_etl@127.0.0.1:{server.port}",
                "credentials": {"iam_auth": True, "region": "ap-northeast-1", "ssl_ca": str(ca)},
            }
        )
    )

    target = Config.load(config).target
    token = target.login_password()
    parts = urlsplit("https://" + token)
    query = parse_qs(parts.query)
    refused = cli(capsys, "snapshots", "-c", config)

    assert (parts.hostname, parts.port) == ("127.0.0.1", server.port)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["iam_etl"]
    assert query["X-Amz-Credential"][0].endswith("/ap-northeast-1/rds-db/aws4_request")
    assert target.password == "" and target.option("ssl_ca") == str(ca)
    assert str(target) == f"mysql://iam_etl:***@127.0.0.1:{server.port}"
    assert refused.code == 2
    assert refused.err_lines == [
        f"etlguard: error: mysql://iam_etl:***@127.0.0.1:{server.port} refused the login for user 'iam_etl': "
        "check the user name and password (from the URL, ${VAR} in it, or the credentials block)"
    ]
    signature = query["X-Amz-Signature"][0]
    assert signature not in refused.out + refused.err
