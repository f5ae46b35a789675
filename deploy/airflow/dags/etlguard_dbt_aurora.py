"""The nightly dbt run on Aurora MySQL, guarded by etlguard: snapshot the protected set, run
`dbt build`, audit, and commit or roll every protected table back in one atomic swap.

Install on the workers: pip install 'etlguard[airflow,aws]' dbt-mysql
Configure: /opt/etl/etlguard.yml (see deploy/airflow/README.md); the password comes from
AWS Secrets Manager or an RDS IAM token, never from the DAG.

Retries: a retry only helps a transient failure. EtlguardOperator fails the task for good on a
configuration error (exit 2), an audit failure (11) or a failed rollback (20, a person must act);
an unreachable Aurora during a failover (5), a busy target (3) or a failed ETL that was rolled
back (10) go through the task's retries.
"""

from __future__ import annotations

import datetime as dt

from typing import Any

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.decorators import task

from etlguard.airflow import EtlguardOperator

ETLGUARD_CONFIG = "/opt/etl/etlguard.yml"
DBT_PROJECT = "/opt/etl/warehouse"

with DAG(
    dag_id="etlguard_dbt_aurora",
    description="dbt build on Aurora, rolled back atomically if it fails",
    start_date=dt.datetime(2026, 1, 1),
    schedule="0 2 * * *",
    catchup=False,
    max_active_runs=1,  # etlguard locks the target anyway; one run at a time keeps the queue clear
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["etlguard", "dbt"],
) as dag:
    dbt_build = EtlguardOperator(
        task_id="dbt_build",
        config=ETLGUARD_CONFIG,
        command=["dbt", "build", "--target", "prod", "--vars", "{today: '{{ ds }}'}"],
        cwd=DBT_PROJECT,
        timeout=3 * 3600,  # etlguard stops dbt's whole process group, then rolls back
        auto_recover=True,  # first settle what a crashed worker's run left
        execution_timeout=dt.timedelta(hours=3, minutes=30),  # on_kill lets etlguard roll back
    )

    @task
    def report(run: dict[str, Any]) -> None:
        """Downstream tasks read the run summary: run id, outcome, tables, snapshot ids, timings."""
        print(f"etlguard run {run['run_id']}: {run['outcome']} in {run['timings']['total']} s")

    report(dbt_build.output)  # a committed run returns its summary; a failed one pushes it as "etlguard"
