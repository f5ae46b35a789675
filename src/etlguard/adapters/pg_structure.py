"""The structure of a PostgreSQL table: read it for the catalog, compare it, and rebuild a table
from a snapshot and the catalog's record when the ETL changed the live one.

PostgresAdapter (postgres.py) builds on this class. The rebuild runs inside the restore's one
transaction: a copy of the snapshot is made first, then the live table is moved aside into the
snapshot schema and the copy renamed into its place, with the recorded index and constraint
names, defaults, sequences, owner, grants, comment and storage options put back and the views
that read the table recreated.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

from ..tables import TableRef
from .base import Adapter, DatabaseError, Swap

try:  # optional: `pip install etlguard[postgres]`
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]


class PostgresStructure(Adapter):
    """Structure and rebuild, for PostgresAdapter; needs its connection (`conn`)."""

    conn: Any = None

    def structure(self, ref: TableRef) -> str:
        """Everything a restore must put back besides the rows: kind, columns (type, collation,
        nullability, default, generation, identity), constraints and indexes with their names,
        owner, grants, comments, storage options, inheritance. The sequences behind defaults and
        identity columns, with their values, ride along for the restore but are not compared
        (they only move forward). Read under a pinned search_path: the text of a default or a
        parent's name depends on it, and a restore executes the recorded defaults."""
        with self._pinned_search_path():
            return self._structure(ref)

    @contextlib.contextmanager
    def _pinned_search_path(self) -> Iterator[None]:
        """search_path = public for the rest of the current transaction, or for a transaction
        of its own when none is open."""
        self.connect()
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.execute(f"SET LOCAL search_path = {PINNED_SEARCH_PATH}")
            yield
            return
        with self._transaction():
            yield

    def _structure(self, ref: TableRef) -> str:
        oid = [self.qualify(ref)]
        (kind, owner, parents, children, comment, options), *_ = self.query(
            "SELECT c.relkind::text, pg_get_userbyid(c.relowner), "
            "ARRAY(SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY 1), "
            "ARRAY(SELECT i.inhrelid::regclass::text FROM pg_inherits i WHERE i.inhparent = c.oid ORDER BY 1), "
            "obj_description(c.oid, 'pg_class'), c.reloptions FROM pg_class c WHERE c.oid = %s::regclass",
            oid,
        )
        return json.dumps(
            {
                "version": STRUCTURE_VERSION,
                "kind": kind,
                "columns": [list(map(str, c)) for c in self._column_shapes(oid)],
                "constraints": [list(c) for c in self._constraints(oid)],
                "indexes": [list(i) for i in self._indexes(ref)],
                "owner": owner,
                "comment": comment,
                "options": sorted(options or []),
                "acl": [list(a) for a in self._acl(oid)],
                "inherits": list(parents),
                "children": list(children),
                "sequences": [list(q) for q in self._sequences(oid)],
            }
        )

    def structure_matches(self, ref: TableRef, recorded: str) -> bool:
        """Compare everything but sequence values; a snapshot recorded before structure version 2
        is compared in the form it was recorded in."""
        if '"version"' not in recorded:
            return self._legacy_structure(ref) == recorded
        return _comparable(self.structure(ref)) == _comparable(recorded)

    def _column_shapes(self, oid: list[str]) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid), "
            "attgenerated, attidentity, CASE WHEN a.attcollation <> t.typcollation "
            "THEN a.attcollation::regcollation::text END, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            oid,
        )

    def _constraints(self, oid: list[str]) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass ORDER BY 1, 2, 3",
            oid,
        )

    def _indexes(self, ref: TableRef) -> list[tuple[str, str]]:
        """(name, definition without the index's and the table's names), by name."""
        rows = self.query(
            "SELECT c.relname, quote_ident(c.relname), pg_get_indexdef(i.indexrelid), "
            "quote_ident(n.nspname) || '.' || quote_ident(t.relname) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE i.indrelid = %s::regclass ORDER BY 1",
            [self.qualify(ref)],
        )
        return [(name, _index_shape(qname, ddl, table)) for name, qname, ddl, table in rows]

    def _acl(self, oid: list[str]) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type, a.is_grantable FROM pg_class c, "
            "aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) a "
            "WHERE c.oid = %s::regclass ORDER BY 1, 2, 3",
            oid,
        )

    def _sequences(self, oid: list[str]) -> list[tuple[Any, ...]]:
        """(column, 'default' | 'identity', schema, name, last value, owned by the column) for
        every sequence a column's default or identity draws from."""
        return self.query(
            "SELECT a.attname, 'default', n.nspname, s.relname, pg_sequence_last_value(s.oid), "
            "EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid "
            "AND o.refobjid = a.attrelid AND o.refobjsubid = a.attnum AND o.deptype = 'a') "
            "FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum "
            "JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid "
            "AND d.refclassid = 'pg_class'::regclass JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' "
            "JOIN pg_namespace n ON n.oid = s.relnamespace WHERE ad.adrelid = %s::regclass "
            "UNION ALL SELECT a.attname, 'identity', n.nspname, s.relname, pg_sequence_last_value(s.oid), true "
            "FROM pg_attribute a JOIN pg_depend d ON d.classid = 'pg_class'::regclass "
            "AND d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum "
            "AND d.deptype = 'i' JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_namespace n ON n.oid = s.relnamespace WHERE a.attrelid = %s::regclass "
            "AND a.attidentity <> '' ORDER BY 1, 2",
            oid * 2,
        )

    def _legacy_structure(self, ref: TableRef) -> str:
        """The structure as version 1 recorded it (columns, constraints, unnamed indexes)."""
        oid = [self.qualify(ref)]
        cols = [c[:6] for c in self._column_shapes(oid)]
        cons = [c[1:] for c in self._constraints(oid)]
        idx = self.query(
            "SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', 'USING ') FROM pg_index "
            "WHERE indrelid = %s::regclass ORDER BY 1",
            oid,
        )
        return json.dumps(
            {
                "columns": [list(map(str, c)) for c in cols],
                "constraints": sorted([list(c) for c in cons]),
                "indexes": [i[0] for i in idx],
            }
        )

    def _copy_rows(self, source: TableRef, dest: TableRef) -> int:
        cols = ", ".join(self.quote(c.name) for c in self.columns(source) if not c.generated)
        return self.execute(
            f"INSERT INTO {self.qualify(dest)} ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {self.qualify(source)}"
        )

    def _create_copy(self, source: TableRef, dest: TableRef) -> None:
        """A table shaped like `source` that depends on nothing of it: no column defaults, whose
        nextval() would tie the copy to the source's sequence (and block the ETL's DROP TABLE);
        the catalog's structure keeps the defaults and a restore puts them back."""
        self.execute(
            f"CREATE TABLE {self.qualify(dest)} (LIKE {self.qualify(source)} INCLUDING ALL EXCLUDING DEFAULTS)"
        )

    @contextlib.contextmanager
    def _transaction(self, isolation: str = "READ COMMITTED") -> Iterator[None]:
        """One transaction in which a read that row-level security would filter is an error
        (row_security = off), never a silently short result, and in which the text of defaults
        and view definitions does not depend on the session's search_path."""
        self.execute(f"BEGIN ISOLATION LEVEL {isolation}")
        try:
            self.execute("SET LOCAL row_security = off")
            self.execute(f"SET LOCAL search_path = {PINNED_SEARCH_PATH}")
            yield
            self.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.execute("ROLLBACK")
            raise

    def _stage_copy(self, s: Swap) -> TableRef:
        """A full copy of the snapshot beside it (the snapshot itself stays restorable), built
        before any lock on the live table is taken."""
        if '"version"' not in s.structure:
            raise DatabaseError(
                f"{s.live} no longer has the structure of its snapshot, which was recorded by an older "
                "etlguard without what a rebuild needs; restore its columns by hand, then restore again"
            )
        shape = json.loads(s.structure)
        if shape["kind"] == "p" or shape["inherits"]:
            raise DatabaseError(
                f"{s.live} is a partitioned table or a partition whose structure changed since the snapshot; "
                "only its rows can be restored: put its structure back by hand, then restore again"
            )
        assert s.staging is not None  # a table only moved aside has no copy to build
        staging = TableRef(s.staging.schema, "r_" + secrets.token_hex(6))
        self._create_copy(s.staging, staging)
        self._copy_rows(s.staging, staging)
        return staging

    def _replace(self, s: Swap, staging: TableRef) -> None:
        shape = json.loads(s.structure)
        views: list[tuple[Any, ...]] = []
        keep = {(q[2], q[3]) for q in shape["sequences"] if q[1] == "default"}
        if self.table_exists(s.live):
            views = self._move_aside(s, keep)
        self.execute(f"ALTER TABLE {self.qualify(staging)} SET SCHEMA {self.quote(s.live.schema)}")
        self.execute(
            f"ALTER TABLE {self.qualify(TableRef(s.live.schema, staging.name))} RENAME TO {self.quote(s.live.name)}"
        )
        self._rename_indexes(s.live, shape["indexes"])
        self._put_back_sequences(s.live, shape)
        self._put_back_privileges(s.live, shape)
        for schema, name, options, definition in views:
            opts = f" WITH ({_options(options)})" if options else ""
            self.execute(
                f"CREATE OR REPLACE VIEW {self.quote(schema)}.{self.quote(name)}{opts} AS {definition}"
            )

    def _move_aside(self, s: Swap, keep: set[tuple[str, str]]) -> list[tuple[Any, ...]]:
        """Lock the live table, refuse what a swap cannot carry, and move it into the snapshot
        schema as the displaced table. Returns the dependent views to recreate."""
        if s.displaced is None:
            raise DatabaseError(f"{s.live} appeared during the restore; restore again")
        self.execute(f"LOCK TABLE {self.qualify(s.live)} IN ACCESS EXCLUSIVE MODE")
        self._refuse_dependents(s.live)
        views = self._dependent_views(s.live)
        self._free_names(s.live, s.displaced.name, keep)
        moved = TableRef(s.live.schema, s.displaced.name)
        self.execute(f"ALTER TABLE {self.qualify(s.live)} RENAME TO {self.quote(moved.name)}")
        self.execute(f"ALTER TABLE {self.qualify(moved)} SET SCHEMA {self.quote(s.displaced.schema)}")
        self._drop_defaults(s.displaced)
        return views

    def _refuse_dependents(self, ref: TableRef) -> None:
        """A foreign key or a materialized view binds to the table's OID and cannot be rebound
        in the same transaction: refuse before anything has changed."""
        live = self.qualify(ref)
        blocker = self.query(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND confrelid = %s::regclass "
            "UNION ALL SELECT DISTINCT v.oid::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_class v ON v.oid = r.ev_class WHERE d.classid = 'pg_rewrite'::regclass "
            "AND d.refobjid = %s::regclass AND v.relkind = 'm' LIMIT 1",
            [live, live],
        )
        if blocker:
            raise DatabaseError(
                f"{ref} must be replaced whole, but {blocker[0][0]} (a foreign key or materialized view) "
                "depends on it; drop that dependency, then restore again"
            )

    def _dependent_views(self, ref: TableRef) -> list[tuple[Any, ...]]:
        """(schema, name, options, definition) of every view reading the table, taken while the
        definitions still name it, so that recreating them binds them to the restored table."""
        return self.query(
            "SELECT DISTINCT n.nspname, v.relname, v.reloptions, pg_get_viewdef(v.oid) "
            "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
            "JOIN pg_namespace n ON n.oid = v.relnamespace WHERE d.classid = 'pg_rewrite'::regclass "
            "AND d.refobjid = %s::regclass AND v.oid <> d.refobjid AND v.relkind = 'v'",
            [self.qualify(ref)],
        )

    def _free_names(self, ref: TableRef, aside: str, keep: set[tuple[str, str]]) -> None:
        """Rename the indexes and sequences that will move with the table, so nothing collides
        in the snapshot schema and the restored table can take the original names; the
        sequences the snapshot's defaults use are detached and stay for the restored table."""
        for i, (kind, schema, name) in enumerate(self._owned(ref)):
            qname = f"{self.quote(schema)}.{self.quote(name)}"
            if kind == "S" and (schema, name) in keep:
                self.execute(f"ALTER SEQUENCE {qname} OWNED BY NONE")
            else:
                verb = "SEQUENCE" if kind == "S" else "INDEX"
                self.execute(f"ALTER {verb} {qname} RENAME TO {self.quote(f'{aside}_{i}')}")

    def _drop_defaults(self, ref: TableRef) -> None:
        """A displaced table is a snapshot: like every snapshot, it depends on no sequence."""
        for (column,) in self.query(
            "SELECT attname FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attgenerated = ''",
            [self.qualify(ref)],
        ):
            self.execute(f"ALTER TABLE {self.qualify(ref)} ALTER COLUMN {self.quote(column)} DROP DEFAULT")

    def _owned(self, ref: TableRef) -> list[tuple[str, str, str]]:
        """The indexes and sequences that move with a table: (relkind, schema, name)."""
        return self.query(
            "SELECT c.relkind::text, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass UNION "
            "SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND refclassid = 'pg_class'::regclass "
            "AND refobjid = %s::regclass AND deptype IN ('a', 'i')) AND c.relkind IN ('i', 'S') ORDER BY 1, 3",
            [self.qualify(ref)] * 2,
        )

    def _rename_indexes(self, ref: TableRef, recorded: list[list[str]]) -> None:
        """Give the restored table's indexes (and so their constraints) the recorded names,
        matching by definition."""
        wanted: dict[str, list[str]] = {}
        for name, shape in recorded:
            wanted.setdefault(shape, []).append(name)
        for name, shape in self._indexes(ref):
            if wanted.get(shape):
                target = wanted[shape].pop(0)
                if target != name:
                    self.execute(
                        f"ALTER INDEX {self.quote(ref.schema)}.{self.quote(name)} RENAME TO {self.quote(target)}"
                    )

    def _put_back_sequences(self, ref: TableRef, shape: dict[str, Any]) -> None:
        """Defaults from the catalog, and the sequences behind them and behind identity columns
        no lower than they were: a restored table never hands out an id twice."""
        for column, kind, schema, name, value, owned in shape["sequences"]:
            if kind == "identity":
                self._put_back_identity(ref, column, name, value)
            else:
                self._put_back_serial(ref, column, TableRef(schema, name), value, owned)
        for column, _type, _null, default, generated, identity, *_ in shape["columns"]:
            if default != "None" and not generated and not identity:  # columns are recorded as str()
                self.execute(
                    f"ALTER TABLE {self.qualify(ref)} ALTER COLUMN {self.quote(column)} SET DEFAULT {default}"
                )

    def _put_back_identity(self, ref: TableRef, column: str, name: str, value: int | None) -> None:
        """The copy's identity sequence takes the original's name and continues past its value."""
        table = self.qualify(ref)
        [(schema, current)] = [
            (q[2], q[3]) for q in self._sequences([table]) if q[0] == column and q[1] == "identity"
        ]
        if current != name:
            self.execute(
                f"ALTER SEQUENCE {self.qualify(TableRef(schema, current))} RENAME TO {self.quote(name)}"
            )
        if value is not None:
            self.execute(
                f"ALTER TABLE {table} ALTER COLUMN {self.quote(column)} RESTART WITH {int(value) + 1}"
            )

    def _put_back_serial(
        self, ref: TableRef, column: str, seq: TableRef, value: int | None, owned: bool
    ) -> None:
        """The sequence a default draws from: kept (detached from the displaced table), or made
        again if the ETL dropped it; owned by the column again; never moved backwards."""
        self.execute(f"CREATE SEQUENCE IF NOT EXISTS {self.qualify(seq)}")
        if owned:
            self.execute(
                f"ALTER SEQUENCE {self.qualify(seq)} OWNED BY {self.qualify(ref)}.{self.quote(column)}"
            )
        if value is not None:
            self.query(
                "SELECT setval(%s::regclass, greatest(%s, COALESCE(pg_sequence_last_value(%s::regclass), 0)))",
                [self.qualify(seq), int(value), self.qualify(seq)],
            )

    def _put_back_privileges(self, ref: TableRef, shape: dict[str, Any]) -> None:
        """Owner, grants, the table's comment and storage options (column comments come with
        the copy: LIKE ... INCLUDING ALL)."""
        table = self.qualify(ref)
        if shape["options"]:
            self.execute(f"ALTER TABLE {table} SET ({_options(shape['options'])})")
        if shape["comment"] is not None:
            self.execute(
                f"COMMENT ON TABLE {table} IS {psycopg.sql.Literal(shape['comment']).as_string(self.conn)}"
            )
        ((owner,),) = self.query(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", [table]
        )
        if owner != shape["owner"]:
            self.execute(f"ALTER TABLE {table} OWNER TO {self.quote(shape['owner'])}")
        for grantee, privilege, grantable in shape["acl"]:
            if grantee == shape["owner"] or privilege not in _PRIVILEGES:
                continue
            who = "PUBLIC" if grantee == "PUBLIC" else self.quote(grantee)
            option = " WITH GRANT OPTION" if grantable else ""
            self.execute(f"GRANT {privilege} ON TABLE {table} TO {who}{option}")


STRUCTURE_VERSION = 2
PINNED_SEARCH_PATH = "public"  # names in other schemas come out qualified, whatever the session says
_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


def _comparable(structure: str) -> dict[str, Any]:
    """A recorded structure without the sequence values, which only ever move forward."""
    shape = json.loads(structure)
    shape.pop("sequences", None)
    return dict(shape)


def _index_shape(quoted_name: str, ddl: str, quoted_table: str) -> str:
    """`CREATE UNIQUE INDEX n ON s.t USING btree (x)` -> `UNIQUE USING btree (x)`: the same for
    a table and its copy, whatever their names."""
    unique = ddl.startswith("CREATE UNIQUE INDEX ")
    head = f"CREATE {'UNIQUE ' if unique else ''}INDEX {quoted_name} ON "
    rest = ddl[len(head) :].removeprefix("ONLY ").removeprefix(quoted_table + " ")
    return ("UNIQUE " if unique else "") + rest


def _options(options: Sequence[str]) -> str:
    """Reloptions as `name = 'value'` pairs (names checked, values quoted)."""
    pairs = []
    for option in options:
        key, _, value = option.partition("=")
        if not key.isidentifier():
            raise DatabaseError(f"unexpected storage option {option!r}")
        pairs.append(f"{key} = '" + value.replace("'", "''") + "'")
    return ", ".join(pairs)
