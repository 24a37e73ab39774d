"""Reading and rewriting SQLite ``CREATE TABLE`` statements.

SQLite cannot drop a UNIQUE, change a primary key or add a foreign key to an
existing column: the table has to be rebuilt from an edited copy of its
``CREATE TABLE``. peewee's ``SqliteMigrator`` edits that text with regular
expressions that understand one level of parentheses; a CHECK with a nested
call or a DEFAULT holding a comma breaks them. This module tokenises the
statement instead (quotes, comments and nested parentheses respected) and
edits whole column definitions and table constraints, leaving everything it
does not touch - CHECKs, collations, defaults, other keys - as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Re-exported: released migration scripts (0011) import quote from here.
from ..database.quoting import quote

__all__ = ["TableDDL", "parse_create_table", "quote", "unquote"]

_TABLE_CONSTRAINT_WORDS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


def unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in '"`':
        return token[1:-1].replace(token[0] * 2, token[0])
    if len(token) >= 2 and token[0] == "[" and token[-1] == "]":
        return token[1:-1]
    return token


def _tokens(sql: str) -> list[str]:
    """Split SQL into words, quoted tokens, parenthesised groups and commas."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "'\"`[":
            j = _end_of_quoted(sql, i)
            out.append(sql[i:j])
            i = j
        elif c == "(":
            j = _end_of_group(sql, i)
            out.append(sql[i:j])
            i = j
        elif c in ",;)":
            out.append(c)
            i += 1
        else:
            j = i
            while j < n and not sql[j].isspace() and sql[j] not in "(),;'\"`[":
                j += 1
            out.append(sql[i:j])
            i = j
    return out


def _end_of_quoted(sql: str, i: int) -> int:
    close = "]" if sql[i] == "[" else sql[i]
    j = i + 1
    while j < len(sql):
        if sql[j] == close:
            if close != "]" and j + 1 < len(sql) and sql[j + 1] == close:
                j += 2  # doubled quote inside the token
                continue
            return j + 1
        j += 1
    raise ValueError(f"unterminated quote in: {sql[i : i + 40]!r}")


def _end_of_group(sql: str, i: int) -> int:
    depth, j = 0, i
    while j < len(sql):
        c = sql[j]
        if c in "'\"`[":
            j = _end_of_quoted(sql, j)
            continue
        if sql.startswith("--", j):
            k = sql.find("\n", j)
            j = len(sql) if k < 0 else k + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise ValueError("unbalanced parentheses in CREATE TABLE")


def _split_commas(tokens: list[str]) -> list[list[str]]:
    items: list[list[str]] = [[]]
    for tok in tokens:
        if tok == ",":
            items.append([])
        else:
            items[-1].append(tok)
    return [item for item in items if item]


def _group_names(group: str) -> list[str]:
    """Column names listed in a ``(a, "b" COLLATE x, c DESC)`` group."""
    return [unquote(item[0]).lower() for item in _split_commas(_tokens(group[1:-1]))]


def _upper(tokens: list[str], i: int) -> str:
    return tokens[i].upper() if 0 <= i < len(tokens) else ""


@dataclass
class TableDDL:
    """A parsed ``CREATE TABLE``: its column definitions and table constraints."""

    items: list[list[str]]
    options: list[str] = field(default_factory=list)

    # -- reading -------------------------------------------------------
    @staticmethod
    def is_constraint(item: list[str]) -> bool:
        return item[0].upper() in _TABLE_CONSTRAINT_WORDS

    def column(self, name: str) -> list[str] | None:
        for item in self.items:
            if not self.is_constraint(item) and unquote(item[0]).lower() == name.lower():
                return item
        return None

    # -- editing -------------------------------------------------------
    def replace_column(self, name: str, definition: str) -> None:
        for pos, item in enumerate(self.items):
            if not self.is_constraint(item) and unquote(item[0]).lower() == name.lower():
                self.items[pos] = _tokens(definition)
                return
        raise KeyError(name)

    def add(self, definition: str) -> None:
        self.items.append(_tokens(definition))

    def drop_unique(self, columns: Iterable[str]) -> bool:
        """Remove a UNIQUE over exactly ``columns``, inline or as a table clause."""
        wanted = [c.lower() for c in columns]
        removed = False
        kept: list[list[str]] = []
        for item in self.items:
            if self.is_constraint(item):
                pos = _keyword_at(item, "UNIQUE")
                if (
                    pos is not None
                    and pos + 1 < len(item)
                    and _group_names(item[pos + 1]) == wanted
                ):
                    removed = True
                    continue
            elif len(wanted) == 1 and unquote(item[0]).lower() == wanted[0]:
                stripped = _strip_clause(item, "UNIQUE", extra=())
                removed = removed or stripped != item
                item = stripped
            kept.append(item)
        self.items = kept
        return removed

    def drop_foreign_key(self, columns: Iterable[str]) -> bool:
        """Remove the foreign key on exactly ``columns``, inline or as a table clause."""
        wanted = [c.lower() for c in columns]
        removed = False
        kept: list[list[str]] = []
        for item in self.items:
            if self.is_constraint(item):
                pos = _keyword_at(item, "FOREIGN")
                if (
                    pos is not None
                    and pos + 2 < len(item)
                    and _group_names(item[pos + 2]) == wanted
                ):
                    removed = True
                    continue
            elif len(wanted) == 1 and unquote(item[0]).lower() == wanted[0]:
                stripped = _strip_references(item)
                removed = removed or stripped != item
                item = stripped
            kept.append(item)
        self.items = kept
        return removed

    def set_primary_key(self, columns: Iterable[str]) -> None:
        """Make ``columns`` the primary key, removing the old one wherever it was."""
        kept: list[list[str]] = []
        for item in self.items:
            if self.is_constraint(item):
                if _keyword_at(item, "PRIMARY") is not None:
                    continue
            else:
                stripped = _strip_clause(
                    item, "PRIMARY", extra=("KEY", "ASC", "DESC", "AUTOINCREMENT")
                )
                if stripped != item and not any(t.upper() == "NOT" for t in stripped):
                    # A rowid table's primary key may hold NULLs unless told
                    # otherwise; keep the former key column NOT NULL.
                    stripped = [*stripped, "NOT", "NULL"]
                item = stripped
            kept.append(item)
        self.items = kept
        self.add("PRIMARY KEY (" + ", ".join(quote(c) for c in columns) + ")")

    def render(self, table: str) -> str:
        body = ",\n  ".join(" ".join(item) for item in self.items)
        tail = (" " + " ".join(self.options)) if self.options else ""
        return f"CREATE TABLE {quote(table)} (\n  {body}\n){tail}"


def _keyword_at(item: list[str], word: str) -> int | None:
    for pos, tok in enumerate(item):
        if tok.upper() == word:
            return pos
    return None


def _strip_clause(item: list[str], word: str, extra: tuple[str, ...]) -> list[str]:
    """Remove ``[CONSTRAINT name] WORD [extra...] [ON CONFLICT x]`` from a column."""
    pos = _keyword_at(item, word)
    if pos is None or pos == 0:
        return item
    start = pos - 2 if _upper(item, pos - 2) == "CONSTRAINT" else pos
    end = pos + 1
    while _upper(item, end) in extra:
        end += 1
    if _upper(item, end) == "ON" and _upper(item, end + 1) == "CONFLICT":
        end += 3
    while _upper(item, end) in extra:
        end += 1
    return item[:start] + item[end:]


def _strip_references(item: list[str]) -> list[str]:
    """Remove ``[CONSTRAINT n] REFERENCES t [(cols)] [ON ... | MATCH x | DEFERRABLE ...]``."""
    pos = _keyword_at(item, "REFERENCES")
    if pos is None:
        return item
    start = pos - 2 if _upper(item, pos - 2) == "CONSTRAINT" else pos
    end = pos + 2
    if end < len(item) and item[end].startswith("("):
        end += 1
    while True:
        word = _upper(item, end)
        if word == "ON":  # ON DELETE|UPDATE action, where SET NULL / NO ACTION are two words
            end += 3 if _upper(item, end + 2) not in ("SET", "NO") else 4
        elif word == "MATCH" or (word == "NOT" and _upper(item, end + 1) == "DEFERRABLE"):
            end += 2
        elif word == "DEFERRABLE":
            end += 1
        elif word == "INITIALLY":
            end += 2
        else:
            break
    return item[:start] + item[end:]


def parse_create_table(sql: str) -> TableDDL:
    tokens = _tokens(sql)
    for pos, tok in enumerate(tokens):
        if tok.startswith("("):
            body = _split_commas(_tokens(tok[1:-1]))
            options = [t for t in tokens[pos + 1 :] if t != ";"]
            return TableDDL(items=body, options=options)
    raise ValueError("not a CREATE TABLE statement with a column list")
