"""No import cycles: the package's modules import one way, layer by layer.

Three checks, each of which fails if a cycle comes back:

* the graph of module-level imports (read from the source, not run) has no
  cycle, and every import goes to the importer's own layer or one below it;
* an import inside a function is allowed only where it puts a cost off
  (an optional extra, a command's start-up), never to dodge a cycle;
* each module imports on its own in a fresh interpreter, without the package's
  ``__init__`` having loaded everything before it: the test of what Python
  really does, including the package ``__init__`` modules it runs on the way
  (``models``, ``tenancy``), which the source graph does not show.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import relay_peewee

PACKAGE = "relay_peewee"
ROOT = Path(relay_peewee.__file__).parent

# Bottom to top. A module may import from its own layer and the ones below.
# `models` straddles `tenancy` on purpose: TenantModel builds on the audited
# base model and the Tenant table, and the tenant tables build on TenantModel.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The exceptions, the tenant ContextVar, the database layer (opening a
    # database, what its connections send, what its catalog says).
    ("core", ("errors", "scope", "database", "fields")),
    (
        "records",
        (
            "models.base",
            "models.async_methods",
            "models._columns",
            "models.audit_log",
            "models.audited",
            "models.tenant",
        ),
    ),
    ("tenancy", ("tenancy",)),
    ("models", ("models",)),
    ("api", ("events",)),
    ("migrator", ("migrator", "migrations")),
    # The operations behind the CLI, the configuration they read, and the
    # schema audit (which checks the roles the operations create).
    ("operations", ("config", "operations")),
    ("audit", ("audit",)),
    ("web", ("web",)),
    ("cli", ("cli", "testing", "")),
]

# Imports inside functions that put a cost off; anything else goes at the top.
DEFERRED_OK = {
    # pwasyncio (the `async` extra) is imported only by code that runs async.
    ("tenancy.context", "tenancy.aio"),
    # The catalog's dataclasses (~5 ms) are paid on a model's first write
    # to a database, not by every `import relay_peewee`.
    ("tenancy.references", "database.catalog"),
    # pwasyncio again: only for a database the application built with it.
    ("database.connect", "database.statement_cache"),
    # What one command needs, not every start of the CLI.
    ("cli", "operations.makemigration"),
    # The tenant file's modules: only `tenants export` / `tenants import` need them.
    ("cli", "operations.tenant_export"),
    ("cli", "operations.tenant_import"),
    ("cli", "operations.tenant_move"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    """The layer of the most specific entry naming ``module`` ("" names every module)."""
    matches = [
        (len(prefix), index)
        for index, (_name, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if prefix == "" or module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The package modules an import statement in ``module`` loads (without package inits)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                yield alias.name.removeprefix(PACKAGE).removeprefix(".")
        return
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".") if module else []
        drop = node.level - 1 if is_package else node.level
        base = base[: len(base) - drop] if drop else base
        target = ".".join([*base, *(node.module.split(".") if node.module else [])])
    elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
        target = node.module.removeprefix(PACKAGE).removeprefix(".")
    else:
        return
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        yield sub if sub in MODULES else target


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    top: set[str] = set()
    deferred: set[str] = set()

    def walk(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            (deferred if in_function else top).update(_resolve(module, node))
            return
        if isinstance(node, ast.If) and _is_type_checking(node):
            children: list[ast.AST] = list(node.orelse)  # its body never runs
        else:
            children = list(ast.iter_child_nodes(node))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in children:
            walk(child, inside)

    walk(tree, False)
    return top - {module}, deferred - {module}


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    # The catch-all "" is the top layer: a new module lands there until it is
    # placed, and then imports below it must hold.
    assert {_layer(m) for m in MODULES} <= set(range(len(LAYERS)))


def test_module_level_imports_have_no_cycle() -> None:
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for target in sorted(GRAPH[module][0]):
            visit(target)
        path.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


def test_imports_go_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, (top, _deferred) in GRAPH.items()
        for target in sorted(top)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_imports_inside_functions_only_put_a_cost_off() -> None:
    deferred = {
        (module, target)
        for module, (_top, inside) in GRAPH.items()
        for target in inside
        # The numbered migration scripts are frozen as they shipped; they
        # sit above everything and import what they need where they need it.
        if not module.startswith("migrations.")
    }
    assert deferred - DEFERRED_OK == set(), (
        "import these at the top of the module; if that makes a cycle, "
        "one of the two modules is in the wrong layer"
    )


# Run in a fresh interpreter: imports each module with an empty package
# standing in for relay_peewee/__init__.py (which would otherwise load
# everything in its own order first), in a child process per module.
_FRESH_IMPORTS = r"""
import importlib, importlib.util, os, sys, traceback, types
import peewee, playhouse.migrate  # what every module needs: loaded once, before forking
spec = importlib.util.find_spec("relay_peewee")
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        root = types.ModuleType("relay_peewee")
        root.__path__ = list(spec.submodule_search_locations)
        sys.modules["relay_peewee"] = root
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] != "relay_peewee":
                os._exit(0)  # an optional extra that is not installed
            traceback.print_exc()
            os._exit(1)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _pid, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("failed:", " ".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child per module")
def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    # Modules that read the package's own __init__ (cli's __version__) need it loaded.
    first = sorted(
        f"{PACKAGE}.{module}" if module else PACKAGE
        for module, (top, _deferred) in GRAPH.items()
        if module and "" not in top
    )
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_IMPORTS, *first],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]


# Calls that name a class's method explicitly (``Model.save(self)``,
# ``ModelInsert._execute(self, db)``) run that class's code and skip every
# layer between it and the caller. Where a layer costs too much, make it
# cheap, deciding once per class when the class is built (as AuditedModelBase
# does), and keep the chain on super().
STEPS_PAST_OK = {
    # Render a source whose tenant predicate the enclosing query already
    # added: the plain rendering is what is wanted, not a faster path to it.
    ("tenancy.scoping", "ModelAlias.__sql__"),
    ("tenancy.scoping", "Table.__sql__"),
}


def _steps_past_a_layer(module: str) -> Iterator[str]:
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.args
        ):
            continue
        owner, method = node.func.value.id, node.func.attr
        # A class (or a module-level alias of one, `_ModelInsert`) and a
        # method that layers override: dunder/private ones and the writes.
        is_class = owner.lstrip("_")[:1].isupper()
        if is_class and (method.startswith("_") or method in {"save", "delete_instance"}):
            yield f"{owner}.{method}"


def test_no_layer_is_stepped_past() -> None:
    found = {
        (module, call)
        for module in MODULES
        if not module.startswith("migrations.")
        for call in _steps_past_a_layer(module)
    }
    assert found - STEPS_PAST_OK == set(), "call super() (or super(Class, obj)) instead"


def test_the_audit_layer_is_chosen_when_the_class_is_defined() -> None:
    from relay_peewee.models import Skill, Tenant, User
    from relay_peewee.models.audited import AuditedDelete, AuditedInsert, AuditedUpdate

    def layers(model: type) -> set[type]:
        queries = {model._insert_query, model._update_query, model._delete_query}  # type: ignore[attr-defined]
        return {base for query in queries for base in query.__mro__}

    audit = {AuditedInsert, AuditedUpdate, AuditedDelete}
    assert layers(User) >= audit  # Meta.audit_events = "user"
    assert layers(Tenant) >= audit
    assert layers(Skill) & audit == set()  # records none: peewee's classes under the scoping
    assert type(Skill.insert(name="x")) is Skill._insert_query  # type: ignore[attr-defined]
