"""Every CLI command has help text and is documented in the README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from relay_peewee.cli import cli

ROOT = Path(__file__).resolve().parent.parent
# The README is being rewritten into a docs site; until a branch's notes are
# folded in, its DOCS-NOTES-<branch>.md at the root is where it documents.
README = "\n".join(
    p.read_text() for p in [ROOT / "README.md", *sorted(ROOT.glob("DOCS-NOTES-*.md"))]
)


def _commands(
    group: click.Group, prefix: str = "relay-peewee"
) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


def test_every_command_has_help_and_is_in_the_readme() -> None:
    commands = list(_commands(cli))
    assert len(commands) >= 5
    for path, command in commands:
        assert (command.help or "").strip(), f"{path} has no help text"
        assert f"`{path}" in README, f"{path} is not documented in README.md"


def test_every_option_is_in_the_readme() -> None:
    for path, command in _commands(cli):
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "database":
                longest = max(param.opts, key=len)
                assert longest in README, f"{path} {longest} is not documented in README.md"
