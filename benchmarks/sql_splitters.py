"""How well sqlglot and sqlparse split and classify the statements guarded transactions see,
against etlguard's own tokenizer (etlguard.statements), on the cases of tests/test_transactions.py.

Run: .venv/bin/python benchmarks/sql_splitters.py   (needs `pip install -e ".[bench]"`)

Splitting is right when the statement texts match the expected ones (whitespace trimmed); an
unterminated quote or comment must be an error, not a statement. Classifying is right when the
first keyword the library reports is the one the refusal rules need (DROP, ALTER, CALL, SET, ...);
a statement the library cannot parse, or reports as "unknown", cannot be classified.
"""

from __future__ import annotations

import logging

import sqlglot
import sqlparse
from sqlglot import exp

from etlguard.errors import ConfigError
from etlguard.statements import MYSQL_LEXICON, STANDARD_LEXICON, split_statements

MYSQL_SCRIPT = (
    "UPDATE t SET a = 'x;y', b = \"p;q\", `c;d` = 1; -- tail; comment\n"
    "# hash; comment\n/* block; */ DELETE FROM t WHERE a = 'it\\'s;';;\n"
    "SELECT 1 /*!50000 ; SELECT 2 */"
)
MYSQL_PARTS = 4
STANDARD_SCRIPT = "SELECT $$a;b$$; SELECT $x$;$x$, E'\\';', 'a\\'; /* a /* nested; */ comment; */ SELECT 3"
STANDARD_PARTS = 3
UNTERMINATED = ["UPDATE t SET a = 'open", "UPDATE t SET a = 1 /* open"]
# statement -> the keyword the refusal rules act on (MySQL / MariaDB cases of the tests)
KINDS = {
    "DROP TABLE s.t": "DROP",
    "ALTER TABLE s.t ADD COLUMN extra INTEGER": "ALTER",
    "TRUNCATE TABLE s.t": "TRUNCATE",
    "CREATE INDEX ix_amount ON s.t (amount)": "CREATE",
    "CREATE TABLE s.copy LIKE s.t": "CREATE",
    "RENAME TABLE s.t TO s.moved": "RENAME",
    "LOCK TABLES s.t WRITE": "LOCK",
    "ANALYZE TABLE s.t": "ANALYZE",
    "GRANT SELECT ON s.t TO 'nobody'@'localhost'": "GRANT",
    "CALL s.some_procedure()": "CALL",
    "SET STATEMENT max_statement_time = 5 FOR DROP TABLE s.t": "SET",
    "START TRANSACTION": "START",
    "COMMIT": "COMMIT",
    "SET autocommit = 1": "SET",
    "SET PASSWORD = 'x'": "SET",
    "START SLAVE": "START",
    "LOAD INDEX INTO CACHE t": "LOAD",
    "PREPARE s FROM 'DROP TABLE t'": "PREPARE",
    "UPDATE t SET note = 'drop table x'": "UPDATE",
    "CREATE TEMPORARY TABLE x (a INT)": "CREATE",
    "SELECT 1--1": "SELECT",
    "END": "END",
}


def ours_split(script: str, lexicon: object) -> int | None:
    try:
        return len(split_statements(script, lexicon))  # type: ignore[arg-type]
    except ConfigError:
        return None


def glot_split(script: str, dialect: str) -> int | None:
    try:
        return len([e for e in sqlglot.parse(script, read=dialect) if e is not None])
    except Exception:
        return None


def parse_split(script: str, _dialect: str) -> int | None:
    return len([s for s in sqlparse.split(script) if s.strip().strip(";").strip()])


def ours_kind(sql: str) -> str | None:
    (stmt,) = split_statements(sql, MYSQL_LEXICON)
    return stmt.words[0] if stmt.words else None


def glot_kind(sql: str) -> str | None:
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except Exception:
        return None
    if isinstance(tree, exp.Command):
        return str(tree.this).upper().split()[0]
    key = tree.key.upper()
    return {"TRANSACTION": "START", "TRUNCATETABLE": "TRUNCATE"}.get(key, key)


def parse_kind(sql: str) -> str | None:
    (stmt,) = sqlparse.parse(sql)
    kind = stmt.get_type()
    return None if kind == "UNKNOWN" else kind


def main() -> None:
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" notes
    splitters = {"etlguard.statements": None, "sqlglot": glot_split, "sqlparse": parse_split}
    kinds = {"etlguard.statements": ours_kind, "sqlglot": glot_kind, "sqlparse": parse_kind}
    for name, split in splitters.items():
        if split is None:
            counts = [ours_split(MYSQL_SCRIPT, MYSQL_LEXICON), ours_split(STANDARD_SCRIPT, STANDARD_LEXICON)]
            bad = [ours_split(s, MYSQL_LEXICON) for s in UNTERMINATED]
        else:
            counts = [split(MYSQL_SCRIPT, "mysql"), split(STANDARD_SCRIPT, "postgres")]
            bad = [split(s, "mysql") for s in UNTERMINATED]
        right = (counts[0] == MYSQL_PARTS) + (counts[1] == STANDARD_PARTS) + sum(b is None for b in bad)
        classified = sum(kinds[name](sql) == kind for sql, kind in KINDS.items())
        wrong = [sql for sql, kind in KINDS.items() if kinds[name](sql) != kind]
        unterminated = ["error" if b is None else f"{b} statement(s)" for b in bad]
        print(
            f"{name:20} split {right}/4 (statements: {counts}, want [4, 3]; unterminated: {unterminated});"
            f" classified {classified}/{len(KINDS)}"
        )
        for sql in wrong:
            print(f"{'':24}not classified: {sql!r} -> {kinds[name](sql)!r}")


if __name__ == "__main__":
    main()
