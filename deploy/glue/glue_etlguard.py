"""AWS Glue 5.0 job script: run dbt under etlguard (`etlguard run -- dbt build ...`).

Glue installs etlguard (the wheel) and dbt through --additional-python-modules. This script
fetches etlguard.yml and the zipped dbt project from S3, runs the guarded dbt command in the
project's folder, and ends the job with etlguard's exit code: 0 succeeds; anything else fails the
job run, after etlguard has rolled the protected tables back (10, 11) or told a person what to do
(20, 21). etlguard's own alerts and CloudWatch metrics say which, as configured in etlguard.yml.

Job parameters (set by deploy/glue/main.tf):
  --etlguard_config  s3://bucket/key of etlguard.yml
  --dbt_project      s3://bucket/key of the dbt project zip (dbt_project.yml, profiles.yml at the top)
  --dbt_command      the command etlguard runs, default "dbt build --target prod"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARAMETERS = ("etlguard_config", "dbt_project", "dbt_command")


def job_arguments(argv: list[str]) -> dict[str, str]:
    """The job's parameters, as Glue passes them (`--name value`); awsglue's getResolvedOptions
    does the same on Glue, this also runs anywhere else."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--etlguard_config", required=True)
    parser.add_argument("--dbt_project", required=True)
    parser.add_argument("--dbt_command", default="dbt build --target prod")
    known, _ = parser.parse_known_args(argv)  # Glue adds its own: --JOB_ID, --JOB_RUN_ID, ...
    return {name: getattr(known, name) for name in PARAMETERS}


def download(uri: str, dest: Path) -> Path:
    import boto3

    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise SystemExit(f"glue_etlguard: {uri!r} is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    boto3.client("s3").download_file(bucket, key, str(dest))
    return dest


def command_argv(command: str) -> list[str]:
    """The dbt command, with `dbt` resolved: Glue installs console scripts next to its Python,
    which is not always on PATH."""
    argv = shlex.split(command)
    if argv and argv[0] == "dbt" and shutil.which("dbt") is None:
        beside = Path(sys.executable).parent / "dbt"
        if beside.exists():
            argv[0] = str(beside)
    return argv


def main(argv: list[str]) -> int:
    args = job_arguments(argv)
    work = Path(tempfile.mkdtemp(prefix="etlguard-glue-"))
    config = download(args["etlguard_config"], work / "etlguard.yml")
    project = work / "project"
    with zipfile.ZipFile(download(args["dbt_project"], work / "project.zip")) as archive:
        archive.extractall(project)
    report = work / "run.json"
    run = [sys.executable, "-m", "etlguard", "run", "--config", str(config), "--json-report", str(report)]
    env = {**os.environ, "DBT_PROFILES_DIR": str(project)}
    code = subprocess.run([*run, "--", *command_argv(args["dbt_command"])], cwd=project, env=env).returncode
    if report.exists():
        result = json.loads(report.read_text(encoding="utf-8"))
        print(
            "etlguard run summary: "
            + json.dumps(
                {k: result.get(k) for k in ("run_id", "status", "exit_code", "message", "rolled_back")}
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
