"""The public API. Every CLI command is one call to a method of `Guard`.

Why this module is long: it is the public API, one short method per command (snapshot,
restore, verify, diff, prune, run, protect, recover, transaction, ...) plus the result types
they return (DiffResult), each opening the target and handing over to an operation module;
splitting it would scatter the API users read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dbt as _dbt
from . import pitr as _pitr
from . import restore as _restore
from .adapters import adapter_for
from .adapters.base import Adapter, Progress
from .catalog import Catalog, Snapshot, utcnow
from .config import STARTER, Config, yaml_scalar
from .cost import Cost
from .drill import DrillReport, run_drill
from .errors import (
    AuditFailed,
    ConfigError,
    EtlguardError,
    LockLost,
    RollbackFailed,
    SnapshotNotFound,
    UnfinishedOperation,
)
from .grants import check_privileges
from .recover import Recovery, RecoveryReport
from .report import ReportData, collect
from .restore_from import Source, import_tables, matching_columns
from .retention import PruneDecision
from .retention import prune as apply_prune
from .run import GuardedRun, RunResult, guarded_run
from .snapshot import Membership, check_tables, match_pattern, require_table, take_snapshots
from .tables import TableRef, parse_table
from .target import Target, parse_target
from .transaction import guarded_transaction

log = logging.getLogger(__name__)


@dataclass
class VerifyResult:
    snapshot: Snapshot
    ok: bool
    actual: str

    def as_dict(self) -> dict[str, object]:
        return {**self.snapshot.as_dict(), "ok": self.ok, "actual": self.actual}


@dataclass
class DiffResult:
    table: TableRef
    snapshot: Snapshot
    live_rows: int
    live_checksum: str
    same_structure: bool
    key: list[str]
    rows: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    added: int | None = None  # None: not counted (the columns differ)
    removed: int | None = None
    changed: int | None = None  # None also when the table has no primary key

    @property
    def identical(self) -> bool:
        return self.same_structure and (self.live_rows, self.live_checksum) == (
            self.snapshot.row_count,
            self.snapshot.checksum,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "table": str(self.table),
            "snapshot_id": self.snapshot.id,
            "snapshot_rows": self.snapshot.row_count,
            "live_rows": self.live_rows,
            "snapshot_checksum": self.snapshot.checksum,
            "live_checksum": self.live_checksum,
            "same_structure": self.same_structure,
            "identical": self.identical,
            "key": self.key,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "columns": self.columns,
            "rows": [
                {"side": side, "row": [str(v) if v is not None else None for v in row]}
                for side, row in self.rows
            ],
        }


class Guard:
    """etlguard on one target, as configured in `etlguard.yml`.

    >>> guard = Guard.from_config("etlguard.yml")
    >>> snaps = guard.snapshot()                  # the whole protected set
    >>> guard.restore(["gold.moveouts"], latest=True)
    """

    def __init__(self, config: Config, progress: Progress | None = None) -> None:
        self.config = config
        self.progress = progress
        self._db: Adapter | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Guard:
        return cls(Config.load(path, **overrides))

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> Guard:
        return cls(Config.from_dict({"target": url, **settings}))

    # -- sessions ---------------------------------------------------------------------------
    @property
    def lock_name(self) -> str:
        return f"etlguard:{self.config.catalog_schema}"

    @contextlib.contextmanager
    def session(
        self, op: str, lock: bool = True, check_journal: bool = True
    ) -> Iterator[tuple[Adapter, Catalog]]:
        """Connect (and lock, for anything that writes), make sure the catalog exists, and
        refuse to act while an interrupted operation is unresolved."""
        db = adapter_for(self.config.target, self.config.lock_wait_seconds)
        try:
            if lock:
                holder = f"etlguard {op} since {utcnow():%Y-%m-%d %H:%M:%S} UTC"
                db.lock(self.lock_name, holder)
            db.connect()
            catalog = Catalog(db, self.config.catalog_schema)
            if lock:
                catalog.ensure()
            elif not catalog.exists():
                raise ConfigError(
                    f"no etlguard catalog in schema {self.config.catalog_schema} on "
                    f"{self.config.target.redacted}; run `etlguard init` or take a snapshot first"
                )
            if check_journal:
                self._refuse_unfinished(catalog)
            yield db, catalog
        finally:
            with contextlib.suppress(EtlguardError):
                db.unlock()
            db.close()

    def _refuse_unfinished(self, catalog: Catalog) -> None:
        # a clone left by a crashed pitr costs money but endangers no table: recover deletes it
        pending = [p for p in catalog.unfinished() if p["op"] != "pitr"]
        if pending:
            p = pending[0]
            raise UnfinishedOperation(
                f"an interrupted {p['op']} (journal entry {p['id']}, pid {p['pid']} on {p['host']}) "
                "must be resolved first; run `etlguard recover`"
            )

    def resolve(self, db: Adapter, names: Sequence[str | TableRef] = ()) -> list[TableRef]:
        """Expand names and globs (default: the configured protected set) to existing tables."""
        patterns = [n if isinstance(n, TableRef) else parse_table(n) for n in names] or list(
            self.config.protect
        )
        if not patterns:
            raise ConfigError("no tables given and no protected set configured; add tables under protect:")
        found: list[TableRef] = []
        for pattern in patterns:
            # a table whose own name holds glob characters is that table, not a pattern
            if not pattern.is_pattern or db.table_exists(pattern):
                require_table(db, pattern)
                matches = [pattern]
            else:
                matches = self._glob(db, pattern)
            found += [m for m in matches if m not in found]
        return found

    def protected_set(self, db: Adapter, command: Sequence[str] = ()) -> Membership:
        """The configured protected set: tables, globs, and dbt selectors read from the manifest.
        A name with no table yet is accepted when the dbt project builds it (a first build);
        a name that neither exists nor is built by the project is a typo, and an error."""
        hidden = [self.config.snapshot_schema, self.config.catalog_schema]
        planned = self._dbt_relations(command)
        found = Membership()
        present = db.existing(self.config.protect)  # one catalog read for the named tables
        for pattern in self.config.protect:
            if pattern.is_pattern and pattern not in present:
                found.globs.append(pattern)
                self._add_glob(db, found, pattern, planned or [], hidden)
            elif planned is not None and pattern in planned and not _exists(db, pattern):
                found.add([pattern], new=True)
            else:
                require_table(db, pattern, _missing_hint(planned, command), present=pattern in present)
                found.add([pattern])
        if self.config.protect_dbt:
            selected = _dbt.select_relations(self._manifest(command), self.config.protect_dbt)
            for ref in selected:
                found.add([ref], new=not db.table_exists(ref))
        if not found.tables and not found.new:
            raise ConfigError("the protected set is empty; list tables or dbt selectors under protect:")
        if planned is not None:
            doomed = [
                r
                for r in _dbt.rebuilt_without_history(self._manifest(command))
                if r in found.tables or r in found.new
            ]
            if doomed:
                raise ConfigError(
                    f"dbt model {doomed[0]} is an Iceberg `table` on dbt-athena, dropped and created again "
                    "with no history to roll back to; make it incremental (table_type='iceberg') or stop protecting it"
                )
        return found

    def _add_glob(
        self, db: Adapter, found: Membership, pattern: TableRef, planned: list[TableRef], hidden: list[str]
    ) -> None:
        matches = match_pattern(db, pattern, hidden)
        later = [r for r in planned if r.matches(pattern) and r not in matches]
        if not matches and not later:
            raise ConfigError(f"protected pattern {pattern} matches no table; fix it under protect:")
        found.add(matches)
        found.add(later, new=True)

    def _manifest(self, command: Sequence[str]) -> dict[str, Any]:
        return _dbt.load_manifest(_dbt.target_dir(self.config.dbt, command))

    def _dbt_relations(self, command: Sequence[str]) -> list[TableRef] | None:
        """Every table the dbt project builds, or None when there is no manifest to read."""
        try:
            manifest = self._manifest(command)
        except ConfigError:
            if self.config.protect_dbt:
                raise
            return None
        return _dbt.select_relations(manifest, ["resource_type:*"])

    def _glob(self, db: Adapter, pattern: TableRef) -> list[TableRef]:
        hidden = [self.config.snapshot_schema, self.config.catalog_schema]
        matches = match_pattern(db, pattern, hidden)
        if not matches:
            raise ConfigError(f"protected pattern {pattern} matches no table; fix it under protect:")
        return matches

    # -- commands ---------------------------------------------------------------------------
    def init(
        self, write_config: Path | None = None, protect: Sequence[str] = (), target_text: str = ""
    ) -> Path | None:
        """Create the catalog, and write a starter config file if asked and none exists. The
        file gets `target_text` as typed when it holds `${VAR}` (the password stays in the
        environment) or is `dbt` (profiles.yml holds the connection); otherwise the URL with its password replaced by ${DB_PASSWORD}."""
        written = None
        if write_config is not None and not write_config.exists():
            lines = "\n".join(f"  - {p}" for p in protect) or "  - gold.*"
            target = (
                target_text
                if "${" in target_text or target_text.strip() == "dbt"
                else self.config.target.redacted.replace(":***", ":${DB_PASSWORD}")
            )
            write_config.write_text(
                STARTER.format(target=yaml_scalar(target), protect=lines), encoding="utf-8"
            )
            written = write_config
        with self.session("init", check_journal=False):
            pass
        return written

    def snapshot(self, tables: Sequence[str | TableRef] = (), run_id: int | None = None) -> list[Snapshot]:
        with self.session("snapshot") as (db, catalog):
            refs = self.resolve(db, tables) if tables else self.protected_set(db).tables
            if not refs:
                raise ConfigError("no table of the protected set exists yet; nothing to snapshot")
            check_privileges(db, refs, self.config.snapshot_schema, self.config.catalog_schema, swaps=False)
            if self.config.snapshot.physical_datadir:
                db.use_physical_copies(
                    self.config.snapshot.physical_datadir, self.config.snapshot_schema, refs
                )
            return take_snapshots(
                db,
                catalog,
                refs,
                self.config.snapshot_schema,
                run_id,
                self.progress,
                self.config.snapshot.consistency,
                reuse=self.config.snapshot_reuse,
                beside=self.config.snapshot.beside_live,
            )

    def snapshots(self, table: str | TableRef | None = None, include_deleted: bool = False) -> list[Snapshot]:
        ref = parse_table(table) if isinstance(table, str) else table
        with self.session("list", lock=False, check_journal=False) as (_, catalog):
            return catalog.snapshots(ref, include_deleted)

    def restore(
        self,
        tables: Sequence[str | TableRef] = (),
        snapshot_ids: Sequence[int] = (),
        latest: bool = False,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
        keep_snapshot: bool = False,
    ) -> _restore.RestoreResult:
        """Swap the snapshots into place, then verify; a table that does not match is exit 20
        with the replaced table kept. The snapshots are consumed unless `keep_snapshot`."""
        with self.session("restore") as (db, catalog):
            refs = [t if isinstance(t, TableRef) else parse_table(t) for t in tables]
            if not refs and not snapshot_ids:
                raise ConfigError("name the tables to restore, or give --snapshot IDs")
            chosen = _restore.choose_snapshots(catalog, refs, snapshot_ids, latest, _to_utc(as_of))
            for snap in chosen.values():
                db.check_identifier(snap.table.schema)
                db.check_identifier(snap.table.name)
            check_privileges(
                db, list(chosen), self.config.snapshot_schema, self.config.catalog_schema, swaps=True
            )
            if not dry_run:  # a run of another catalog protecting these tables must not be swapped under
                db.lock_tables(sorted(chosen), "etlguard restore")
            steps = _restore.plan_restore(db, catalog, chosen, self.config.snapshot_schema, keep_snapshot)
            if dry_run:
                return _restore.RestoreResult(steps, dry_run=True)
            result = _restore.run_restore(
                db, catalog, steps, self.config.snapshot_schema, self.progress, prove_first=True
            )
            _restore.require_verified(result)
            return result

    def restore_from(
        self,
        tables: Sequence[str | TableRef],
        url: str | Target,
        schema_map: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> _restore.RestoreResult:
        """Copy TABLES from another server or schema (`url`), verify each copy by fingerprint
        against the source, and swap them in atomically like any restore."""
        refs = [t if isinstance(t, TableRef) else parse_table(t) for t in tables]
        if not refs:
            raise ConfigError("name the tables to restore from the other server")
        source_target = url if isinstance(url, Target) else parse_target(url)
        source_db = adapter_for(source_target, self.config.lock_wait_seconds)
        with self.session("restore") as (db, catalog):
            if source_db.name != db.name:
                raise ConfigError(f"--from must be a {db.name} server like the target, not {source_db.name}")
            check_privileges(db, refs, self.config.snapshot_schema, self.config.catalog_schema, swaps=True)
            try:
                source_db.connect()
                source = Source(source_db, source_db.target.redacted, dict(schema_map or {}))
                if dry_run:
                    return self._plan_from(db, catalog, source, refs)
                chosen = import_tables(db, catalog, source, refs, self.config.snapshot_schema, self.progress)
            finally:
                source_db.close()
            steps = _restore.plan_restore(db, catalog, chosen, self.config.snapshot_schema)
            result = _restore.run_restore(db, catalog, steps, self.config.snapshot_schema, self.progress)
            _restore.require_verified(result)
            return result

    def pitr(
        self,
        tables: Sequence[str | TableRef],
        when: dt.datetime | None,
        cluster: str,
        keep_clone: bool = False,
        instance_class: str = _pitr.DEFAULT_INSTANCE_CLASS,
        region: str | None = None,
        schema_map: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
        rds: Any = None,
        clone_target: Callable[[_pitr.Endpoint], Target] | None = None,
    ) -> _restore.RestoreResult:
        """Restore a clone of `cluster` at `when` (None: a copy-on-write clone of the latest
        restorable time), copy TABLES from it with restore_from, and delete the clone (after a
        failure or Ctrl-C too); see pitr.py. `clone_target` turns the clone's endpoint into the
        target to read (default: the target's user and password at the clone's host)."""
        options = _pitr.Options(keep_clone, instance_class, region, echo, rds, clone_target)
        return _pitr.point_in_time_restore(self, tables, when, cluster, schema_map, options)

    def _plan_from(
        self, db: Adapter, catalog: Catalog, source: Source, refs: list[TableRef]
    ) -> _restore.RestoreResult:
        """A dry run checks both sides (tables exist, columns match) and copies nothing."""
        for ref in refs:
            matching_columns(db, source, ref)
        return _restore.RestoreResult([], dry_run=True)

    def verify(self, tables: Sequence[str | TableRef] = (), deep: bool = False) -> list[VerifyResult]:
        """`deep` also reads what an identity fingerprint only names (Iceberg: every data file)."""
        refs = {t if isinstance(t, TableRef) else parse_table(t) for t in tables}
        with self.session("verify", lock=False, check_journal=False) as (db, catalog):
            results = []
            for snap in catalog.snapshots():
                if snap.verified and (not refs or snap.table in refs):
                    results.append(self._verify_one(db, snap, deep))
            return results

    def _verify_one(self, db: Adapter, snap: Snapshot, deep: bool = False) -> VerifyResult:
        if not db.table_exists(snap.snapshot):
            return VerifyResult(snap, False, "snapshot table is missing")
        cs = db.checksum(snap.snapshot, snap.fingerprint)
        problem = db.deep_check(snap.snapshot) if deep and snap.matches(cs) else None
        return VerifyResult(snap, snap.matches(cs) and problem is None, problem or str(cs))

    def diff(self, table: str | TableRef, snapshot_id: int | None = None, limit: int = 20) -> DiffResult:
        ref = parse_table(table) if isinstance(table, str) else table
        with self.session("diff", lock=False, check_journal=False) as (db, catalog):
            snap = catalog.snapshot(snapshot_id) if snapshot_id else None
            if snapshot_id is None:
                snap = _restore.choose_snapshots(catalog, [ref], latest=True)[ref]
            if snap is None or snap.table != ref or snap.status == "deleted":
                raise SnapshotNotFound(f"snapshot {snapshot_id} of {ref}")
            check_tables(db, [ref])
            live = db.checksum(ref, snap.fingerprint)
            diff = DiffResult(
                ref,
                snap,
                live.rows,
                live.digest,
                db.structure_matches(ref, snap.structure),
                key=db.primary_key(snap.snapshot),
                columns=[c.name for c in db.columns(snap.snapshot) if not c.generated],
            )
            if not diff.identical and _same_columns(db, ref, snap):
                diff.removed, diff.added, diff.changed = db.diff_counts(snap.snapshot, ref, diff.key)
                if limit:
                    diff.rows = db.row_diff(snap.snapshot, ref, diff.key, limit)
            elif diff.identical:
                diff.removed = diff.added = diff.changed = 0
            return diff

    def run(
        self,
        command: Sequence[str],
        timeout: float | None = None,
        json_report: Path | None = None,
        echo: Callable[[str], None] | None = None,
        auto_recover: bool = False,
        drill: bool = False,
        pass_env: Sequence[str] = (),
    ) -> RunResult:
        """Lock, snapshot the protected set, run `command`, audit, then commit or roll back.
        Problems found before the command would start raise (nothing touched, command not
        run); everything after is reported in the returned RunResult and its exit_code. The
        command does not see the target URL's variables unless named in `pass_env`."""
        return guarded_run(self, command, timeout, json_report, echo, auto_recover, drill, pass_env)

    @contextlib.contextmanager
    def protect(self, echo: Callable[[str], None] | None = None) -> Iterator[RunResult]:
        """Guard ETL code written in Python: snapshot on entry; on an exception roll back and
        re-raise it; on a clean exit audit, and roll back and raise AuditFailed if one fails.

        >>> with guard.protect():
        ...     run_my_transformations()
        """
        run = GuardedRun(self, ["python"], echo)
        run.start()
        try:
            yield run.result
        except BaseException as exc:
            result = run.finish(False, f"the ETL raised {type(exc).__name__}: {exc}")
            if result.status in _MUST_ACT:
                raise _MUST_ACT[result.status](result.message, result) from exc
            raise
        result = run.finish(True)
        failed = {**_MUST_ACT, "audit_failed": AuditFailed}.get(result.status)
        if failed is not None:
            raise failed(result.message, result)

    def drill(self, command: Sequence[str] = (), echo: Callable[[str], None] | None = None) -> DrillReport:
        """The design note's Testing Plan against this setup (see drill.py); data ends as a
        normal night would leave it."""
        return run_drill(self, command, echo)

    def recover(
        self, dry_run: bool = False, force: bool = False, echo: Callable[[str], None] | None = None
    ) -> RecoveryReport:
        """Finish or undo what interrupted operations left (see recover.py); never under a live
        ETL. `force` vouches for an ETL that ran on another host, unseen from here."""
        grace, quiet = self.config.statement_grace_seconds, echo or log.info
        with self.session("recover", check_journal=False) as (db, catalog):
            return Recovery(db, catalog, self.config.snapshot_schema, force, grace, quiet).run(dry_run)

    def runs(self, run_id: int | None = None) -> list[dict[str, Any]]:
        with self.session("runs", lock=False, check_journal=False) as (_, catalog):
            rows = catalog.runs(run_id)
        if run_id is not None and not rows:
            raise ConfigError(f"no run {run_id}; list runs with `etlguard runs`")
        return rows

    def report(self, since_days: float | None = None) -> ReportData:
        """What `etlguard report` renders: runs, table histories and the measured cost."""
        with self.session("report", lock=False, check_journal=False) as (_, catalog):
            return collect(catalog, self.config.target.redacted, self.config.report.prices, since_days)

    def cost(self, since_days: float | None = None) -> Cost:
        """The storage held by snapshots, the time they add to a night, and a monthly projection."""
        return self.report(since_days).cost

    def prune(self, dry_run: bool = False, now: dt.datetime | None = None) -> list[PruneDecision]:
        with self.session("prune") as (db, catalog):
            return apply_prune(db, catalog, self.config.retention, now or db.server_now(), dry_run)

    # -- guarded transactions (etlguard.transaction) ----------------------------------------
    def transaction(self, timeout: float | None = None, dry_run: bool = False) -> Any:
        """A guarded transaction: `with guard.transaction(timeout=30) as tx:` ... commits at
        the end only if every validation declared on `tx` passes. See etlguard.transaction."""
        return guarded_transaction(self, timeout=timeout, dry_run=dry_run)


def _same_columns(db: Adapter, ref: TableRef, snap: Snapshot) -> bool:
    return [c.name for c in db.columns(ref)] == [c.name for c in db.columns(snap.snapshot)]


_NO_MANIFEST = (
    "if the run creates it, let etlguard see the dbt project's manifest "
    "(run `dbt parse`, or set dbt.project_dir / dbt.target_path)"
)


def _missing_hint(planned: list[TableRef] | None, command: Sequence[str]) -> str:
    if planned is not None:
        return "the dbt project does not build it either"
    return _NO_MANIFEST if _dbt.is_dbt(command) else ""


def _exists(db: Adapter, ref: TableRef) -> bool:
    db.check_identifier(ref.schema)
    db.check_identifier(ref.name)
    return db.table_exists(ref)


def _to_utc(when: dt.datetime | None) -> dt.datetime | None:
    """A naive time is the machine's local time, as a person typing --as-of means it."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.astimezone(dt.UTC).replace(tzinfo=None)


_MUST_ACT: dict[str, type[EtlguardError]] = {"rollback_failed": RollbackFailed, "lock_lost": LockLost}
