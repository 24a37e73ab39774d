"""Python source for a drafted migration, laid out as ``ruff format`` lays it out.

A draft is committed unedited, so it must already read like code a
maintainer wrote: double quotes, one call per line while it fits, and
otherwise one argument per line with a trailing comma (which the formatter
keeps exploded). ruff is a development tool, not a dependency, so the
layout is done here; tests run ``ruff format --check`` on real drafts.

``value`` prints the frozen data (plans, DDL); ``statement`` reprints a
line of ``playhouse.migrations.template`` output (single-quoted, one line)
the same way, so both halves of a script agree.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from typing import Any

__all__ = ["WIDTH", "docstring", "names_used", "statement", "string", "value"]

WIDTH = 88  # ruff's default line length: an application's own config may only be longer
INDENT = "    "


def string(text: str) -> str:
    """A string literal in ruff's preferred quotes: double, unless that escapes more."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def docstring(lines: list[str]) -> str:
    """A module docstring; the caller keeps quotes and backslashes out of it."""
    if len(lines) == 1:
        return f'"""{lines[0]}"""'
    return '"""' + "\n".join(lines) + '\n"""'


def _fits(text: str, used: int) -> bool:
    return "\n" not in text and len(text) + used <= WIDTH


def _bracketed(opener: str, items: list[str], closer: str, depth: int, used: int) -> str:
    """``opener`` + items + ``closer``: on one line if it fits, else one item a line."""
    inline = opener + ", ".join(items) + closer
    if _fits(inline, used):
        return inline
    pad = INDENT * (depth + 1)
    body = "".join(f"{pad}{item},\n" for item in items)
    return f"{opener}\n{body}{INDENT * depth}{closer}"


def value(obj: Any, depth: int = 0, used: int = 0) -> str:
    """Source for ``obj`` (str, number, None, tuple, list, dict, dataclass)."""
    inner = len(INDENT) * (depth + 1) + 1  # an item line ends with a comma

    def item(x: Any, prefix: str = "") -> str:
        return prefix + value(x, depth + 1, inner + len(prefix))

    if isinstance(obj, str):
        return string(obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return repr(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        args = []
        for f in dataclasses.fields(obj):
            current = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING and current == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and current == f.default_factory():
                continue
            positional = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            args.append(item(current, "" if positional else f"{f.name}="))
        return _bracketed(type(obj).__name__ + "(", args, ")", depth, used)
    if isinstance(obj, tuple):
        if len(obj) == 1:
            return _bracketed("(", [item(obj[0])], ",)", depth, used).replace(",,)", ",)")
        return _bracketed("(", [item(x) for x in obj], ")", depth, used)
    if isinstance(obj, list):
        return _bracketed("[", [item(x) for x in obj], "]", depth, used)
    if isinstance(obj, dict):
        return _bracketed(
            "{", [value(k) + ": " + item(v) for k, v in obj.items()], "}", depth, used
        )
    raise TypeError(f"cannot freeze {type(obj).__name__} into a migration")


def _expr(node: ast.expr, depth: int, used: int) -> str:
    inner = len(INDENT) * (depth + 1) + 1

    def sub(n: ast.expr, prefix: str = "") -> str:
        return prefix + _expr(n, depth + 1, inner + len(prefix))

    if isinstance(node, ast.Constant):
        return value(node.value, depth, used)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _expr(node.value, depth, used) + "." + node.attr
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [sub(e) for e in node.elts]
        if isinstance(node, ast.List):
            return _bracketed("[", items, "]", depth, used)
        if len(items) == 1:
            return _bracketed("(", items, ",)", depth, used).replace(",,)", ",)")
        return _bracketed("(", items, ")", depth, used)
    if isinstance(node, ast.Call):
        head = _expr(node.func, depth, used)
        args = [sub(a) for a in node.args] + [sub(k.value, f"{k.arg}=") for k in node.keywords]
        return _bracketed(head + "(", args, ")", depth, used)
    # Anything else template() might write: ast's own rendering, unchanged.
    return ast.unparse(node)


def statement(source: str, depth: int = 1) -> list[str]:
    """Reprint the statements of template() output, indented for ``depth``."""
    out: list[str] = []
    previous: ast.stmt | None = None
    for node in ast.parse(source).body:
        # ruff's blank line around a class defined among statements (the
        # frozen models of a table the diff creates).
        if previous is not None and ast.ClassDef in (type(node), type(previous)):
            out.append("")
        out += _statement(node, depth)
        previous = node
    return out


def _statement(node: ast.stmt, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(node, ast.Expr):
        return (pad + _expr(node.value, depth, len(pad))).split("\n")
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = ast.unparse(node.targets[0]) + " = "
        return (pad + target + _expr(node.value, depth, len(pad) + len(target))).split("\n")
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases)
        # `class Meta:`, as ruff formats a class without bases.
        lines = [f"{pad}class {node.name}({bases}):" if bases else f"{pad}class {node.name}:"]
        for pos, child in enumerate(node.body):
            if isinstance(child, ast.ClassDef) and pos:
                lines.append("")  # ruff's blank line before a nested class
            lines += _statement(child, depth + 1)
        return lines
    return [pad + line for line in ast.unparse(node).splitlines()]


def names_used(lines: list[str]) -> set[str]:
    """Every bare name the (already indented-away) source lines load."""
    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
