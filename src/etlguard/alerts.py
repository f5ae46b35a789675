"""Alerts: tell a person how a run ended, through Amazon SNS, email, Slack, Teams or a webhook.

`announce` is called once at the end of every guarded run. It never raises and never changes
the run's outcome: a channel that fails becomes a note in the run record. A failed rollback
is announced on every channel whatever the channel is configured for, because a person must act.
Every outgoing text passes through `Secrets.scrub`, so a password configured anywhere (the
target URL, a channel URL, a `${VAR}`) is never sent, even if the ETL printed it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .config.notify import Channel, Secrets
from .config.schema import OUTCOMES
from .metrics import publish
from .posting import post

if TYPE_CHECKING:
    from .config import Config
    from .run import RunResult

# A run's status, as the outcomes (config.schema.OUTCOMES) that channels subscribe to.
_STATUS_OUTCOMES = {
    "ok": {"succeeded"},
    "etl_failed": {"rolled_back", "etl_failed"},
    "audit_failed": {"rolled_back", "audit_failed"},
    "snapshot_failed": {"snapshot_failed"},
    "rollback_failed": {"rollback_failed"},
    "lock_lost": {"rollback_failed"},  # a person must act, like a failed rollback
    "interrupted": {"snapshot_failed"},  # stopped before the ETL started; nothing changed
}
_HEADLINE = {
    "ok": "succeeded",
    "etl_failed": "ROLLED BACK",
    "audit_failed": "ROLLED BACK",
    "snapshot_failed": "SNAPSHOT FAILED, ETL not run",
    "rollback_failed": "ROLLBACK FAILED, ACTION NEEDED",
    "lock_lost": "LOCK LOST, ACTION NEEDED",
    "interrupted": "INTERRUPTED before the ETL started",
}
_LOG_PREFIX = re.compile(r"^\S+ \S+ - [A-Z]+ - ")  # apprise's "date time - LEVEL - "


# -- the message ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    data: dict[str, Any]  # RunResult.as_dict() plus subject, job_name, outcomes: for webhooks

    def as_json(self) -> str:
        return json.dumps(self.data, indent=2, default=str)


def outcomes_of(result: RunResult) -> set[str]:
    return set(_STATUS_OUTCOMES.get(result.status, ()))


def compose(config: Config, result: RunResult) -> Message:
    """The subject line, the plain-text body and the JSON document for one run, scrubbed."""
    secrets = config.secrets
    subject = (
        f"[etlguard] {config.job_name} run {result.run_id} {_HEADLINE.get(result.status, result.status)}"
    )
    cause = _cause(result)
    if result.status != "ok" and cause:
        subject += f": {cause}"
    body = "\n".join(_body_lines(config, result))
    if config.report.url:  # the page of recent runs, when someone publishes it
        body += f"\nReport: {config.report.url}"
    data = {
        "subject": subject,
        "job_name": config.job_name,
        "outcomes": sorted(outcomes_of(result)),
        "next_step": _next_step(config, result),
        **({"report_url": config.report.url} if config.report.url else {}),
        **result.as_dict(),
    }
    return Message(secrets.scrub(subject), secrets.scrub(body) + "\n", secrets.scrub_data(data))


def test_message(config: Config) -> Message:
    secrets = config.secrets
    subject = f"[etlguard] {config.job_name} TEST: alert channel check"
    body = (
        f"This is a test alert from etlguard for job {config.job_name} on {config.target.redacted}.\n"
        "If you can read it, this channel will carry the alerts of guarded runs.\n"
    )
    data = {"subject": subject, "job_name": config.job_name, "test": True, "target": config.target.redacted}
    return Message(secrets.scrub(subject), secrets.scrub(body), secrets.scrub_data(data))


def _cause(result: RunResult) -> str:
    errors = [n for n in result.dbt_failures if n.status.lower() != "skipped"]
    if errors:
        more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
        return f"{errors[0].unique_id.split('.')[-1]} failed{more}"
    failed = result.failed_audits
    if failed:
        more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
        return f"audit {failed[0].table or failed[0].name} {failed[0].check} failed{more}"
    if result.etl is not None and not result.etl.ok:
        return result.etl.describe().replace("the ETL", "ETL")
    return ""


def _body_lines(config: Config, result: RunResult) -> list[str]:
    lines = [
        f"etlguard run {result.run_id} of job {config.job_name}: {_HEADLINE.get(result.status, result.status)}",
        "",
        f"Target:    {result.target}",
        f"Command:   {shlex.join(result.command)}",
        f"Exit code: {result.exit_code} ({result.status})",
        f"Message:   {result.message}",
    ]
    failed = _failure_lines(result)
    if failed:
        lines += ["", "What failed:", *failed]
    lines += ["", f"Protected tables ({len(result.protected)}): {', '.join(result.protected) or 'none'}"]
    if result.snapshot_ids:
        lines.append(f"Snapshots: {', '.join(map(str, result.snapshot_ids))}")
    lines += _rollback_lines(result)
    lines.append(_timing(result))
    if result.notes:
        lines += ["", "Notes:", *(f"  {n}" for n in result.notes)]
    if result.etl is not None and result.etl.tail and not result.ok:
        lines += ["", "Last lines of the ETL's output:", *(f"  {t}" for t in result.etl.tail[-10:])]
    lines += ["", _next_step(config, result)]
    return lines


def _failure_lines(result: RunResult) -> list[str]:
    lines = []
    if result.etl is not None and (not result.etl.ok or result.status == "etl_failed"):
        lines.append(f"  {result.etl.describe()} (after {result.etl.seconds:.1f} s)")
    for node in result.dbt_failures[:10]:
        first = node.message.strip().splitlines()[0][:300] if node.message.strip() else ""
        lines.append(f"  dbt: {node.unique_id} {node.status}" + (f": {first}" if first else ""))
    if len(result.dbt_failures) > 10:
        lines.append(f"  dbt: and {len(result.dbt_failures) - 10} more nodes")
    for audit in result.failed_audits:
        values = ", ".join(f"{k}={v}" for k, v in audit.values.items())
        lines.append(f"  audit {audit}" + (f" [{values}]" if values else ""))
    if result.status == "snapshot_failed":
        lines.append(f"  snapshot: {result.message}")
    return lines


def _rollback_lines(result: RunResult) -> list[str]:
    if not result.rolled_back:
        return []
    verified = set(result.rollback_verified)
    unverified = [t for t in result.rolled_back if t not in verified]
    lines = [f"Rolled back: {', '.join(result.rolled_back)}"]
    lines.append(
        f"Verified against the snapshot checksums: {', '.join(result.rollback_verified) or 'none'}"
        + (f"; NOT verified: {', '.join(unverified)}" if unverified else "")
    )
    return lines


def _timing(result: RunResult) -> str:
    etl = f", ETL {result.etl.seconds:.1f} s" if result.etl else ""
    rollback = f", rollback {result.rollback_seconds:.2f} s" if result.rolled_back else ""
    return (
        f"Timing: snapshot {result.snapshot_seconds:.2f} s ({result.snapshot_bytes:,} bytes){etl}"
        f"{rollback}, total {result.total_seconds:.1f} s"
    )


def _next_step(config: Config, result: RunResult) -> str:
    show = _cli(config, f"etlguard show {result.run_id}")
    if result.status in ("rollback_failed", "lock_lost"):
        restore = _cli(config, result.recovery_command or "etlguard recover")
        return f"ACTION NEEDED: run `{restore}`, then check the tables with `{show}`."
    if result.status in ("etl_failed", "audit_failed"):
        return (
            "Nothing to undo: the protected tables are back as they were before the run, verified. "
            f"Fix the cause and rerun. Details: `{show}`"
        )
    if result.status == "snapshot_failed":
        return f"Nothing was changed and the ETL did not run. Details: `{show}`"
    return f"Details: `{show}`"


def _cli(config: Config, command: str) -> str:
    """`etlguard SUB ...` with --config when the run used a config file other than ./etlguard.yml."""
    path = config.path
    if "--config" in command.split():  # already as the run printed it
        return command
    if path is None or (not path.is_absolute() and path == Path("etlguard.yml")):
        return command
    head, _, rest = command.partition(" ")
    sub, _, args = rest.partition(" ")
    return " ".join(p for p in (head, sub, "--config", shlex.quote(str(path.resolve())), args) if p)


# -- delivery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    channel: str  # the channel's printable label
    ok: bool
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "ok": self.ok, "error": self.error}


class DeliveryFailed(Exception):
    """A channel refused or could not be reached; internal to this module."""


def deliver(channel: Channel, message: Message, secrets: Secrets) -> Delivery:
    try:
        _SENDERS[channel.kind](channel, message)
    except Exception as exc:  # any failure of any library is this channel's failure, nothing more
        reason = str(exc) or type(exc).__name__
        return Delivery(channel.label, False, secrets.scrub(" ".join(reason.split()))[:500])
    return Delivery(channel.label, True)


def _send_sns(channel: Channel, message: Message) -> None:
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise DeliveryFailed("boto3 is not installed; pip install 'etlguard[aws]'") from None
    timeouts = BotoConfig(connect_timeout=channel.timeout_seconds, read_timeout=channel.timeout_seconds)
    client = boto3.client("sns", region_name=channel.region, config=timeouts)
    subject = _sns_subject(message.subject)
    client.publish(TopicArn=channel.address, Subject=subject, Message=message.body)


def _sns_subject(subject: str) -> str:
    """SNS wants under 100 printable ASCII characters, no newlines."""
    ascii_only = "".join(c if 32 <= ord(c) < 127 else "?" for c in subject)
    return ascii_only if len(ascii_only) < 100 else ascii_only[:96] + "..."


def _send_apprise(channel: Channel, message: Message) -> None:
    import apprise

    plugin = apprise.Apprise.instantiate(channel.address)
    if plugin is None:
        raise DeliveryFailed("apprise does not understand this URL")
    if "format" not in dict(parse_qsl(urlsplit(channel.address).query)):
        # the body is laid out as plain text; apprise's HTML default would fold its lines
        plugin.notify_format = apprise.NotifyFormat.TEXT
    sender = apprise.Apprise()
    sender.add(plugin)
    with apprise.LogCapture(level=apprise.logging.WARNING) as log:
        sent = sender.notify(title=message.subject, body=message.body, body_format=apprise.NotifyFormat.TEXT)
        if not sent:
            reasons = [_LOG_PREFIX.sub("", line).strip() for line in log.getvalue().splitlines()]
            reasons = [r for r in reasons if r]
            raise DeliveryFailed("; ".join(reasons[-3:]) or "apprise could not deliver it")


def _send_webhook(channel: Channel, message: Message) -> None:
    if channel.format == "json":
        body, content_type = message.as_json().encode(), "application/json"
    else:
        body, content_type = f"{message.subject}\n\n{message.body}".encode(), "text/plain; charset=utf-8"
    headers = {"Content-Type": content_type, "User-Agent": "etlguard", **dict(channel.headers)}
    post(channel.address, body, headers, channel.timeout_seconds)


_SENDERS = {"sns": _send_sns, "apprise": _send_apprise, "webhook": _send_webhook}


def notify(config: Config, result: RunResult) -> list[Delivery]:
    """Send the run's message through every channel that wants this outcome."""
    outcomes = outcomes_of(result)
    wanted = [c for c in config.alerts.channels if c.wants(outcomes, config.alerts.on)]
    if not wanted:
        return []
    message, secrets = compose(config, result), config.secrets
    return [deliver(c, message, secrets) for c in wanted]


def send_test(config: Config) -> list[Delivery]:
    """A test message through every configured channel, whatever it is configured for."""
    message, secrets = test_message(config), config.secrets
    return [deliver(c, message, secrets) for c in config.alerts.channels]


def announce(config: Config, result: RunResult) -> list[str]:
    """Alerts and metrics for a finished run. Never raises; returns notes for the run record."""
    notes: list[str] = []
    try:
        deliveries = notify(config, result)
        sent = [d.channel for d in deliveries if d.ok]
        if sent:
            notes.append(f"alert sent via {', '.join(sent)}")
        notes += [f"alert via {d.channel} failed: {d.error}" for d in deliveries if not d.ok]
    except Exception as exc:  # a bug here must not turn a rolled-back run into a crash
        notes.append(f"alerts failed: {_safe_error(config, exc)}")
    try:
        notes += publish(config, result)
    except Exception as exc:
        notes.append(f"metrics failed: {_safe_error(config, exc)}")
    return notes


def _safe_error(config: Config, exc: Exception) -> str:
    try:
        return config.secrets.scrub(f"{type(exc).__name__}: {exc}")[:500]
    except Exception:
        return type(exc).__name__


__all__ = [
    "OUTCOMES",
    "Channel",
    "Delivery",
    "Message",
    "announce",
    "compose",
    "notify",
    "outcomes_of",
    "send_test",
]
