"""The `etlguard` command group and what every command shares: the consoles, the options, the
examples epilog, the progress bar, tables and JSON output, and `main`, which maps an
EtlguardError to its one-line message and exit code. Thin: every command makes one library call."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..catalog import Snapshot
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, EtlguardError
from ..guard import Guard
from ..progress import Reading, Reporter, interval, size_text
from ..tables import TableRef
from . import logs
from .logs import configure as configure_logging

out = Console(highlight=False, soft_wrap=True, emoji=False)  # ":secret:" in an ARN is text
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _examples(self: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Print the Examples epilog verbatim, as written (click would rewrap it)."""
    if self.epilog:
        formatter.write("\n" + self.epilog.rstrip() + "\n")


class Command(click.Command):
    """A command whose help ends with its examples."""

    format_epilog = _examples


class Group(click.Group):
    """A command group whose help ends with its examples, like every command's."""

    format_epilog = _examples


def command(name: str, examples: str) -> Callable[[Callable[..., Any]], click.Command]:
    return cli.command(name, cls=Command, epilog="Examples:\n" + examples)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="etlguard")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="ETLGUARD_CONFIG",
    help="Config file, before or after the command (default: $ETLGUARD_CONFIG, then ./etlguard.yml).",
)
@click.option("--verbose", "-v", count=True, help="Say more (repeat for debug detail).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="ETLGUARD_LOG_FORMAT",
    help="Log lines on stderr as text, or one JSON object per line (CloudWatch Logs).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool, log_format: str) -> None:
    """etlguard: snapshot the tables that matter, run the ETL, and roll every protected table
    back in one atomic swap if anything fails.

    Configuration is read from ./etlguard.yml (or --config, or ETLGUARD_CONFIG); ETLGUARD_URL
    overrides the target.
    """
    ctx.meta["etlguard.config"] = config_path
    configure_logging(-1 if quiet else verbose, log_format)


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (default: $ETLGUARD_CONFIG, then ./etlguard.yml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def given_config(config_path: Path | None) -> Path | None:
    """The config file named after the command, else before it (`etlguard -c f run`), else
    None: the loader then reads ETLGUARD_CONFIG or ./etlguard.yml."""
    if config_path is not None:
        return config_path
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get("etlguard.config") if ctx is not None else None


def guard_for(config_path: Path | None, command: Sequence[str] = ()) -> Guard:
    """The guard of the config file; `command` is the ETL a `run` wraps (for `target: dbt`)."""
    return Guard.from_config(given_config(config_path), command=tuple(command))


@contextmanager
def progress_bar(guard: Guard, what: str, enabled: bool = True) -> Iterator[None]:
    """How far each table's copy is. On a terminal, a bar per table: rows copied against the
    server's estimate, redrawn every half second. Piped (cron, Airflow), a line through
    `logs.say` every ETLGUARD_PROGRESS_SECONDS (10 s), so -q and --log-format json apply."""
    if not enabled:
        yield
        return
    if not err.is_terminal:
        guard.progress = Reporter(lambda r: logs.say(r.text(what)), interval(terminal=False))
        try:
            yield
        finally:
            guard.progress = None
        return
    with Progress(
        TextColumn(f"{what} [bold]{{task.fields[table]}}"),
        BarColumn(),
        TextColumn("{task.fields[rows]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[TableRef, TaskID] = {}

        def draw(r: Reading) -> None:
            if r.table not in tasks:
                tasks[r.table] = bar.add_task(
                    what, total=r.rows_estimate or None, table=str(r.table), rows=""
                )
            task = tasks[r.table]
            if r.done:
                bar.update(task, total=r.rows_done, completed=r.rows_done, rows=f"{r.rows_done or 0:,} rows")
                return
            rows = r.text(what).split(": ", 1)[1].rsplit(", ", 1)[0]
            total = max(r.rows_estimate or 0, r.rows_done or 0) or None
            bar.update(task, total=total, completed=r.rows_done or 0, rows=rows)

        guard.progress = Reporter(draw, interval(terminal=True))
        try:
            yield
        finally:
            guard.progress = None


def main(argv: Sequence[str] | None = None) -> int:
    logs.state.update(format="text", quiet=False)
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="etlguard", standalone_mode=False
        )
        if isinstance(code, int):  # click returns ctx.exit(code) instead of raising, in this mode
            return code
    except EtlguardError as exc:
        error_line(str(exc))
        return exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click's own translation of Ctrl-C
            logs.say("interrupted", "error")
            return EXIT_INTERRUPTED
        logs.say("aborted", "error")
        return EXIT_FAILED
    except click.ClickException as exc:
        # one line, like every other error: a 03:00 job log should not need a usage screen
        ctx = exc.ctx if isinstance(exc, click.UsageError) else None
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        error_line(f"{exc.format_message()}{hint}")
        return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        logs.say("interrupted", "error")
        return EXIT_INTERRUPTED
    return 0


def error_line(text: str) -> None:
    """The one line an error ends with: text, or a JSON object under --log-format json."""
    logs.say(text, "error")


def run_main() -> None:
    sys.exit(main())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "plain", "tsv", "json"]),
    help="table (a terminal's default), plain (aligned columns, never cut: the default when "
    "piped), tsv (tab-separated, a header line first) or json.",
)

SNAPSHOT_COLUMNS = ("id", "table", "taken at (UTC)", "rows", "size", "status", "kind")


def snapshot_rows(snaps: Sequence[Snapshot]) -> list[tuple[str, ...]]:
    return [
        (
            str(s.id),
            str(s.table),
            f"{s.taken_at:%Y-%m-%d %H:%M:%S}",
            "" if s.row_count is None else f"{s.row_count:,}",
            size_text(s.size_bytes),
            s.status,
            s.kind if s.reuses is None else f"{s.kind} (reuses {s.reuses})",
        )
        for s in snaps
    ]


def listing_format(fmt: str | None, as_json: bool) -> str:
    """The format asked for; else a rich table on a terminal and plain columns when piped, so
    a cron or Airflow log never shows a name cut to fit 80 columns."""
    if as_json:
        return "json"
    return fmt or ("table" if out.is_terminal else "plain")


def show_listing(
    fmt: str, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "", right: int = 0
) -> None:
    """Print `rows` under `columns` in `fmt` (not json: callers emit their own records). Only
    the rich table is drawn; every other form writes each value whole."""
    if fmt == "table":
        table = Table(title=title or None, show_lines=False)
        for n, col in enumerate(columns):
            table.add_column(col, justify="right" if right >> n & 1 else "left", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        # wider than the terminal rather than a name cut to `nc_gold.custo…`
        needed = sum(max(len(v) for v in c) + 3 for c in zip(columns, *rows, strict=False)) + 1
        Console(highlight=False, emoji=False, width=max(out.width, needed)).print(table)
    elif fmt == "tsv":
        for row in (columns, *rows):
            click.echo("\t".join(v.replace("\t", " ").replace("\n", " ") for v in row))
    else:
        widths = [max(len(str(v)) for v in col) for col in zip(columns, *rows, strict=False)]
        for row in (columns, *rows):
            cells = [
                v.rjust(w) if right >> n & 1 else v.ljust(w)
                for n, (v, w) in enumerate(zip(row, widths, strict=True))
            ]
            click.echo("  ".join(cells).rstrip())


SNAPSHOT_RIGHT = 0b1001  # id and rows are right-aligned


def parse_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time; write 2026-02-03 06:00 or 2026-02-03T06:00+09:00"
        ) from None
