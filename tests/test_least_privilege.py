"""RELIABILITY scenario 15: a full cycle works with the documented grants, and removing any one
of them is reported, naming it, before anything destructive (the ETL never starts)."""

from __future__ import annotations

import uuid

import pytest
import yaml

from etlguard.errors import EXIT_ETL_FAILED, EXIT_OK, EXIT_USAGE

from conftest import Backend
from faultlib import Rig

pytestmark = pytest.mark.mariadb

SWAPPED = ["SELECT", "INSERT", "CREATE", "DROP", "ALTER", "LOCK TABLES"]
CATALOG = ["SELECT", "INSERT", "UPDATE", "CREATE"]


@pytest.fixture
def limited(maria: Backend):
    rig = Rig(maria)
    user, password = f"lp_{maria.tag}", f"pw-{uuid.uuid4().hex[:10]}"
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    grants = {rig.schema: SWAPPED, maria.snapshot_schema: SWAPPED, maria.catalog_schema: CATALOG}
    for schema, privs in grants.items():
        maria.sql(f"GRANT {', '.join(privs)} ON {maria.q(schema)}.* TO '{user}'@'%'")
    settings = yaml.safe_load(rig.config.read_text())
    settings["target"] = f"mariadb+pymysql://{user}:{password}@127.0.0.1:{maria.port}"
    rig.config.write_text(yaml.safe_dump(settings))
    try:
        yield rig, user, grants
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")


def test_full_cycle_with_the_documented_grants(limited) -> None:
    rig, _, _ = limited
    pre = rig.state()
    failed = rig.etlguard("run", "--", *rig.etl_command("fail"))
    assert failed.returncode == EXIT_ETL_FAILED, failed.stderr
    assert rig.state() == pre
    ok = rig.etlguard("run", "--", *rig.etl_command("ok"))
    assert ok.returncode == EXIT_OK, ok.stderr
    restored = rig.etlguard("restore", f"{rig.schema}.orders", f"{rig.schema}.order_lines", "--latest")
    assert restored.returncode == EXIT_OK, restored.stderr
    assert rig.state() == pre
    assert rig.etlguard("prune").returncode == EXIT_OK
    assert rig.etlguard("verify").returncode == EXIT_OK


CASES = [("prot", p) for p in SWAPPED] + [("snaps", p) for p in SWAPPED] + [("etlguard", p) for p in CATALOG]


@pytest.mark.parametrize(("which", "privilege"), CASES, ids=[f"{w}-{p}" for w, p in CASES])
def test_each_missing_grant_is_reported_before_the_etl(limited, which: str, privilege: str) -> None:
    rig, user, _grants = limited
    assert rig.etlguard("snapshot").returncode == 0  # the catalog exists, as it would in production
    schema = {"prot": rig.schema, "snaps": rig.b.snapshot_schema, "etlguard": rig.b.catalog_schema}[which]
    rig.b.sql(f"REVOKE {privilege} ON {rig.b.q(schema)}.* FROM '{user}'@'%'")
    pre = rig.state()
    marker = rig.dir / "etl-ran"
    proc = rig.etlguard("run", "--", "touch", str(marker))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert f"lacks {privilege} on schema {schema}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert rig.state() == pre


def test_grants_through_a_default_role_are_recognised(maria: Backend) -> None:
    rig = Rig(maria)
    user, role, inner = f"lr_{maria.tag}", f"etl_role_{maria.tag}", f"cat_role_{maria.tag}"
    password = f"pw-{uuid.uuid4().hex[:10]}"
    maria.sql(f"CREATE ROLE {inner}")  # nested: the catalog grants come through a role of the role
    maria.sql(f"GRANT {', '.join(CATALOG)} ON {maria.q(maria.catalog_schema)}.* TO {inner}")
    maria.sql(f"CREATE ROLE {role}")
    for schema in (rig.schema, maria.snapshot_schema):
        maria.sql(f"GRANT {', '.join(SWAPPED)} ON {maria.q(schema)}.* TO {role}")
    maria.sql(f"GRANT {inner} TO {role}")
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    maria.sql(f"GRANT {role} TO '{user}'@'%'")
    maria.sql(f"SET DEFAULT ROLE {role} FOR '{user}'@'%'")
    settings = yaml.safe_load(rig.config.read_text())
    settings["target"] = f"mariadb+pymysql://{user}:{password}@127.0.0.1:{maria.port}"
    rig.config.write_text(yaml.safe_dump(settings))
    try:
        pre = rig.state()
        failed = rig.etlguard("run", "--", *rig.etl_command("fail"))
        assert failed.returncode == EXIT_ETL_FAILED, failed.stderr
        assert rig.state() == pre
        maria.sql(f"REVOKE LOCK TABLES ON {maria.q(rig.schema)}.* FROM {role}")
        refused = rig.etlguard("run", "--", *rig.etl_command("ok"))
        assert (
            refused.returncode == EXIT_USAGE and f"lacks LOCK TABLES on schema {rig.schema}" in refused.stderr
        )
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")
        maria.sql(f"DROP ROLE IF EXISTS {role}")
        maria.sql(f"DROP ROLE IF EXISTS {inner}")
