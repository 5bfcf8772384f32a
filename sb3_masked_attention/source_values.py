"""Defaults and constants read from a module's source, without importing the module.

The command line takes every flag's default from the function or config dataclass that owns it (the command line
never restates a number), but importing those modules loads torch and SB3: seconds before ``--help`` could answer.
So a flag names its owner by reference, ``"sb3_masked_attention.ad.evaluate:evaluate_ad"``, and the default is read
from the parsed source: literals only (a number, string, tuple, ``None``; a name bound to a literal at module level;
``field(default=...)`` / ``field(default_factory=...)`` in a dataclass). Anything else is refused, naming it.
tests/test_cli.py checks every flag's default against the imported owner's.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent

#: Every (reference, name) read so far (name None for a constant): the test compares each with the imported value.
READS: set[tuple[str, str | None]] = set()


@functools.cache
def _tree(module: str) -> ast.Module:
    """The parsed source of ``module`` (a module of this package)."""
    package, _, rest = module.partition(".")
    if package != PACKAGE_DIR.name or not rest:
        raise ValueError(f"{module!r} is not a module of {PACKAGE_DIR.name}")
    path = PACKAGE_DIR.joinpath(*rest.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.parse(path.read_text(), filename=str(path))


def _definition(body: list[ast.stmt], qualname: str, reference: str) -> ast.AST:
    """The class or function ``qualname`` (``A.b`` for a method) among the statements ``body``."""
    node: ast.AST | None = None
    for part in qualname.split("."):
        node = next(
            (s for s in body if isinstance(s, (ast.ClassDef, ast.FunctionDef)) and s.name == part),
            None,
        )
        if node is None:
            raise ValueError(f"{reference}: no definition {part!r}")
        body = node.body
    assert node is not None
    return node


def _bound(tree: ast.Module, name: str) -> ast.expr | None:
    """The expression module-level ``name`` is bound to (``NAME = ...`` or ``NAME: type = ...``), if any."""
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        value = getattr(statement, "value", None)
        if value is not None and any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return value
    return None


def _imported_from(tree: ast.Module, name: str) -> str | None:
    """The module of this package that ``from ... import name`` at module level takes ``name`` from, if any."""
    for statement in tree.body:
        if (
            isinstance(statement, ast.ImportFrom)
            and statement.module
            and any(alias.name == name and alias.asname in (None, name) for alias in statement.names)
        ):
            return statement.module
    return None


def _literal(node: ast.expr, tree: ast.Module, where: str) -> Any:
    """``node``'s value if it is a literal or a module-level name bound to one (here or where it is imported from)."""
    if isinstance(node, ast.Name):
        value = _bound(tree, node.id)
        if value is not None:
            return _literal(value, tree, where)
        source = _imported_from(tree, node.id)
        if source is not None and source.startswith(PACKAGE_DIR.name + "."):
            return source_constant(f"{source}:{node.id}")
        raise ValueError(f"{where}: {node.id} is not a module-level literal")
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{where}: the default {ast.unparse(node)} is not a literal") from None


def _field_default(value: ast.expr, tree: ast.Module, where: str) -> Any:
    """A dataclass field's default: ``= literal``, ``field(default=...)`` or ``field(default_factory=...)``."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "field":
        keywords = {keyword.arg: keyword.value for keyword in value.keywords}
        if "default" in keywords:
            return _literal(keywords["default"], tree, where)
        factory = keywords.get("default_factory")
        if isinstance(factory, ast.Lambda):
            return _literal(factory.body, tree, where)
        if isinstance(factory, ast.Name) and factory.id in ("list", "dict", "tuple"):
            return {"list": [], "dict": {}, "tuple": ()}[factory.id]
        raise ValueError(f"{where}: the field has no literal default")
    return _literal(value, tree, where)


def source_default(reference: str, name: str) -> Any:
    """The default of parameter ``name`` of the function, or of field ``name`` of the dataclass, that ``reference``
    (``"package.module:Qualified.name"``) names, read from its source."""
    READS.add((reference, name))
    module, _, qualname = reference.partition(":")
    tree = _tree(module)
    node = _definition(tree.body, qualname, reference)
    where = f"{reference} {name}"
    if isinstance(node, ast.FunctionDef):
        arguments = node.args
        positional = [*arguments.posonlyargs, *arguments.args]
        defaults = dict(zip([a.arg for a in positional[len(positional) - len(arguments.defaults) :]], arguments.defaults))
        defaults |= {a.arg: d for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None}
        if name not in defaults:
            raise ValueError(f"{where}: no parameter with a default")
        return _literal(defaults[name], tree, where)
    assert isinstance(node, ast.ClassDef)
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.target.id == name:
            if statement.value is None:
                raise ValueError(f"{where}: the field has no default")
            return _field_default(statement.value, tree, where)
    for base in node.bases:  # a dataclass's inherited fields, from a base defined in the same module
        if isinstance(base, ast.Name) and _bound(tree, base.id) is None:
            try:
                return source_default(f"{module}:{base.id}", name)
            except ValueError:
                continue
    raise ValueError(f"{where}: no such field")


def source_constant(reference: str) -> Any:
    """The literal value of module-level name ``reference`` (``"package.module:NAME"``); for a dict (a table of
    classes, say), its keys as a tuple: what a flag's ``choices`` need."""
    READS.add((reference, None))
    module, _, name = reference.partition(":")
    tree = _tree(module)
    value = _bound(tree, name)
    if value is None:
        raise ValueError(f"{reference}: no module-level name {name!r}")
    if isinstance(value, ast.Dict):
        return tuple(_literal(key, tree, reference) for key in value.keys if key is not None)
    return _literal(value, tree, reference)
