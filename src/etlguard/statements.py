"""SQL statement rules: split a script into statements and say which ones would end a guarded
transaction.

Hand-written on purpose, and kept apart from the transaction that uses it. Measured with
benchmarks/sql_splitters.py on the cases of tests/test_transactions.py: this module gets 4/4
splitting cases right (two scripts, two unterminated texts) and classifies 22/22 statements;
sqlglot 30 splits 3/4 (a PostgreSQL script with dollar quotes and nested comments comes out as four
statements, not three) and classifies 21/22 (`END` parses as a column name), and it parses 7 of the
22 only as an opaque "Command" (first word), which is what this tokenizer does anyway; sqlparse 0.6
gets 0/4 (wrong counts for both scripts, and unterminated quotes and comments pass as statements)
and classifies 11/22. A guarded transaction must fail closed, so a library that refuses less is not
an improvement.

This is a tokenizer that knows comments and quoted text, not a parser: enough to find statement
boundaries and keywords, never to run anything. No SQL text is built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .adapters.base import Adapter

# -- reading SQL text ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    """How a database spells comments and quoted text: enough to find statement boundaries
    and keywords, not a parser."""

    hash_comments: bool  # MySQL: '# ...'
    dash_comment_needs_space: bool  # MySQL: '--' starts a comment only before whitespace
    backslash_escapes: bool  # MySQL (default sql_mode): 'it\'s'
    executable_comments: bool  # MySQL: /*! ... */ and MariaDB /*M! ... */ are executed
    dollar_quotes: bool  # PostgreSQL, DuckDB: $tag$ ... $tag$
    nested_comments: bool  # PostgreSQL, DuckDB: /* /* */ */


MYSQL_LEXICON = Lexicon(True, True, True, True, False, False)
STANDARD_LEXICON = Lexicon(False, False, False, False, True, True)


def lexicon_for(db: Adapter) -> Lexicon:
    # The identifier quote tells the family: backticks are MySQL's, with MySQL's comments.
    return MYSQL_LEXICON if db.identifier_quote == "`" else STANDARD_LEXICON


@dataclass
class Statement:
    text: str  # as written, without the terminating semicolon
    words: list[str]  # keywords and names outside quotes and comments, upper case, in order
    tokens: list[str] = field(repr=False)  # words and punctuation (quoted text as "'")


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[\w@$]+")
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d*")


def split_statements(script: str, lex: Lexicon = MYSQL_LEXICON) -> list[Statement]:
    """Split on semicolons outside quotes and comments; statements that hold nothing but
    comments are dropped. Unterminated quotes or comments are refused: the server would read
    the rest of the script differently from us."""
    statements: list[Statement] = []
    tokens: list[str] = []
    start, open_exec = 0, 0
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c == ";":
            _add_statement(statements, script[start:i], tokens)
            start, tokens, i = i + 1, [], i + 1
        elif c.isspace():
            i += 1
        elif _starts_line_comment(script, i, lex):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
        elif script.startswith("/*", i):
            exec_marker = _executable_comment(script, i, lex)
            if exec_marker:  # the server runs what is inside: read it as code
                open_exec += 1
                i = exec_marker
            else:
                i = _skip_block_comment(script, i, lex)
        elif open_exec and script.startswith("*/", i):
            open_exec -= 1
            i += 2
        elif c in "'\"`":
            i = _skip_quoted(script, i, c, _backslash_escapes(lex, c, tokens, script, i))
            tokens.append("'")
        elif c == "$" and lex.dollar_quotes and (m := _DOLLAR_TAG.match(script, i)):
            close = script.find(m.group(0), m.end())
            if close < 0:
                raise ConfigError(f"unterminated {m.group(0)} quoted text in the SQL")
            i = close + len(m.group(0))
            tokens.append("'")
        elif m := _WORD.match(script, i):
            tokens.append(m.group(0).upper())
            i = m.end()
        else:
            tokens.append(c)
            i += 1
    _add_statement(statements, script[start:], tokens)
    return statements


def _add_statement(statements: list[Statement], text: str, tokens: list[str]) -> None:
    if tokens:
        statements.append(_statement(text.strip(), tokens))


def _statement(text: str, tokens: list[str]) -> Statement:
    return Statement(text, [t for t in tokens if t[0].isalnum() or t[0] in "_@$"], tokens)


def _starts_line_comment(script: str, i: int, lex: Lexicon) -> bool:
    if script[i] == "#":
        return lex.hash_comments
    if not script.startswith("--", i):
        return False
    after = script[i + 2 : i + 3]
    return not lex.dash_comment_needs_space or after == "" or after.isspace() or ord(after) < 32


def _executable_comment(script: str, i: int, lex: Lexicon) -> int:
    """Where the code of a MySQL executable comment (/*!50001 ... */, /*M!100100 ... */)
    starts, or 0 when this is an ordinary comment."""
    if not lex.executable_comments:
        return 0
    m = _EXECUTABLE_COMMENT.match(script, i)
    return m.end() if m else 0


def _skip_block_comment(script: str, i: int, lex: Lexicon) -> int:
    depth, j = 1, i + 2
    while depth:
        close = script.find("*/", j)
        opening = script.find("/*", j) if lex.nested_comments else -1
        if close < 0:
            raise ConfigError("unterminated /* comment in the SQL")
        if 0 <= opening < close:
            depth, j = depth + 1, opening + 2
        else:
            depth, j = depth - 1, close + 2
    return j


def _backslash_escapes(lex: Lexicon, quote: str, tokens: list[str], script: str, i: int) -> bool:
    if quote == "`":
        return False
    if lex.backslash_escapes:
        return True
    # PostgreSQL and DuckDB read backslash escapes only in E'...' strings
    return quote == "'" and tokens[-1:] == ["E"] and script[i - 1] in "eE"


def _skip_quoted(script: str, i: int, quote: str, backslash_escapes: bool) -> int:
    j = i + 1
    while j < len(script):
        c = script[j]
        if c == "\\" and backslash_escapes:
            j += 2
        elif c == quote and script.startswith(quote * 2, j):
            j += 2  # a doubled quote stands for itself
        elif c == quote:
            return j + 1
        else:
            j += 1
    raise ConfigError(f"unterminated {quote} quoted text in the SQL")


# -- what a guarded transaction refuses ---------------------------------------------------------

_TRANSACTION_CONTROL = {"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT", "XA"}
# The MySQL manual's "Statements That Cause an Implicit Commit" (MySQL 8.0, section 15.3.3) by
# first keyword: DDL, account management, locking, administration and replication control.
_DDL = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"}
_IMPLICIT_COMMIT = {
    "GRANT": "changes accounts",
    "REVOKE": "changes accounts",
    "LOCK": "is a table or instance lock statement",
    "UNLOCK": "is a table or instance lock statement",
    "ANALYZE": "is an administrative statement",
    "CACHE": "is an administrative statement",
    "CHECK": "is an administrative statement",
    "FLUSH": "is an administrative statement",
    "OPTIMIZE": "is an administrative statement",
    "REPAIR": "is an administrative statement",
    "RESET": "is an administrative statement",
    "INSTALL": "installs a plugin or component",
    "UNINSTALL": "removes a plugin or component",
    "BACKUP": "is a backup lock statement",
    "STOP": "is replication control",
    "CHANGE": "is replication control",
}
# Statements whose effect etlguard cannot read from the text: a procedure or a prepared
# statement may commit or run DDL, which would end the guarded transaction unseen.
_OPAQUE = {"CALL", "PREPARE", "EXECUTE"}


def refusal(stmt: Statement, transactional_ddl: bool) -> str | None:
    """Why `stmt` cannot run inside a guarded transaction, or None if it can."""
    words = stmt.words
    first = words[0] if words else ""
    if first == "SET" and words[1:2] == ["STATEMENT"] and "FOR" in stmt.tokens:
        # MariaDB's SET STATEMENT var = value FOR <statement>: judge the statement
        inner = stmt.tokens[stmt.tokens.index("FOR") + 1 :]
        return refusal(_statement(stmt.text, inner), transactional_ddl) if inner else None
    if first == "DELIMITER":
        return "DELIMITER is a command of the mysql client, not SQL; end statements with ;"
    if first in _TRANSACTION_CONTROL and not _is_replication(words):
        name = " ".join(words[:2]) if first == "START" else first
        return (
            f"{name} is transaction control; etlguard begins, commits and rolls back "
            "the guarded transaction itself"
        )
    if first == "SET" and _sets_autocommit(stmt.tokens):
        return "SET autocommit would commit or end the guarded transaction"
    if transactional_ddl or not first:
        return None
    return _implicit_commit(first, words)


def _implicit_commit(first: str, words: list[str]) -> str | None:
    if first in _DDL and not _is_temporary_table(words):
        what = f"{first} {_object_kind(words)}".strip()
        return (
            f"{what} is DDL, which MySQL and MariaDB commit implicitly and cannot roll back; "
            "it would end the guarded transaction"
        )
    if first in _OPAQUE:
        return (
            f"{first} runs SQL that etlguard cannot see, which could commit or run DDL and "
            "end the guarded transaction; run it outside one"
        )
    why = _IMPLICIT_COMMIT.get(first, "")
    if first == "LOAD" and words[1:2] == ["INDEX"]:
        why, first = "is an administrative statement", "LOAD INDEX"
    elif first == "START":  # START REPLICA / SLAVE / GROUP_REPLICATION
        why, first = "is replication control", f"START {words[1]}"
    elif first == "SET" and "PASSWORD" in words[1:3]:
        why, first = "changes accounts", "SET PASSWORD"
    if not why:
        return None
    return f"{first} {why}; MySQL and MariaDB commit implicitly before it, which would end the guarded transaction"


def _is_replication(words: list[str]) -> bool:
    """START REPLICA, START SLAVE, START GROUP_REPLICATION: not START TRANSACTION."""
    return words[0] == "START" and words[1:2] not in (["TRANSACTION"], [])


_SET_SCOPE = {"SET", ",", ".", "SESSION", "LOCAL", "GLOBAL"}


def _sets_autocommit(tokens: list[str]) -> bool:
    """An assignment to the autocommit variable, in any spelling (not a read of it)."""
    for k, token in enumerate(tokens):
        if token != "=":
            continue
        j = k - 2 if tokens[k - 1] == ":" else k - 1
        if j >= 1 and tokens[j] in ("AUTOCOMMIT", "@@AUTOCOMMIT") and tokens[j - 1] in _SET_SCOPE:
            return True
    return False


def _is_temporary_table(words: list[str]) -> bool:
    """CREATE [OR REPLACE] TEMPORARY TABLE and DROP TEMPORARY TABLE do not commit."""
    head = [w for w in words[1:5] if w not in ("OR", "REPLACE")]
    return words[0] in ("CREATE", "DROP") and head[:2] == ["TEMPORARY", "TABLE"]


_OBJECT_KINDS = {"TABLE", "VIEW", "INDEX", "DATABASE", "SCHEMA", "PROCEDURE", "FUNCTION", "TRIGGER"}
_OBJECT_KINDS |= {"EVENT", "USER", "ROLE", "SERVER", "TABLESPACE", "SEQUENCE", "TABLES"}


def _object_kind(words: list[str]) -> str:
    return next((w for w in words[1:5] if w in _OBJECT_KINDS), "")


def check_statements(db: Adapter, sql: str) -> list[str]:
    """Split `sql` and refuse all of it (ConfigError) if any statement would end the guarded
    transaction. Needs no connection: only the adapter's class attributes."""
    statements = split_statements(sql, lexicon_for(db))
    for number, stmt in enumerate(statements, 1):
        why = refusal(stmt, db.transactional_ddl)
        if why:
            where = f"statement {number} " if len(statements) > 1 else ""
            raise ConfigError(f"refused {where}`{short_sql(stmt.text, 50)}`: {why}; nothing was run")
    return [s.text for s in statements]


def check_one(db: Adapter, sql: str) -> str:
    """`check_statements` for a query that must be exactly one statement (a validation)."""
    texts = check_statements(db, sql)
    if len(texts) != 1:
        raise ConfigError(f"expected one SQL statement, got {len(texts)}: `{short_sql(sql, 50)}`")
    return texts[0]


def short_sql(sql: str, width: int = 80) -> str:
    """One line of at most `width` characters, for messages that quote a statement."""
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 3] + "..."
