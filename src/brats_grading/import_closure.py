"""Which shared component modules a bundle needs: the import closure of what its configs and scripts name.

A bundle carries only these (``scripts/sync_components.py``), so the ensemble does not ship training
handlers it never runs. The closure follows every relative import of a component module, including
imports inside functions (they run when the function is called), and resolves a package attribute such
as ``handlers.PredictionSaver`` through the package's lazy ``_MODULE_OF`` table.
"""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path

#: ``scripts.common.<dotted>`` in a config: ``_target_`` names, ``$`` expressions and ``$import`` lines
CONFIG_REFERENCE = re.compile(r"\bscripts\.common((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
LAZY_TABLE = "_MODULE_OF"


def lazy_table(init_file: Path) -> dict[str, str]:
    """The ``{attribute: submodule}`` table a package's ``__init__.py`` imports lazily (empty if none)."""
    tree = ast.parse(init_file.read_text(), filename=str(init_file))
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == LAZY_TABLE for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    return {}


def resolve(source: Path, parts: list[str]) -> set[str]:
    """Files (relative to ``source``) that importing the dotted name ``parts`` under ``source`` loads."""
    files = {"__init__.py"}
    folder = source
    for index, part in enumerate(parts):
        prefix = folder.relative_to(source).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        if (folder / part / "__init__.py").is_file():
            folder = folder / part
            files.add(f"{prefix}{part}/__init__.py")
        elif (folder / f"{part}.py").is_file():
            files.add(f"{prefix}{part}.py")
            return files
        else:
            module = lazy_table(folder / "__init__.py").get(part)
            if module is None:
                shown = ".".join(parts[: index + 1])
                raise ValueError(f"{shown!r} names no module or lazily exported attribute under {source}")
            files.add(f"{prefix}{module}.py")
            return files
    return files


def _imported(source: Path, module: list[str], names: list[str]) -> set[str]:
    """Files ``from <module> import <names>`` loads: the module, and each name that is a submodule or a
    lazily exported attribute (an ordinary attribute lives in the module already counted)."""
    files = resolve(source, module)
    for name in names:
        with contextlib.suppress(ValueError):
            files |= resolve(source, [*module, name])
    return files


def _imports(source: Path, relative_file: str) -> set[str]:
    """Files the relative imports of one component module load (absolute imports are pip requirements)."""
    path = source / relative_file
    package = Path(relative_file).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = list(package[: len(package) - (node.level - 1)])
        module = base + (node.module.split(".") if node.module else [])
        found |= _imported(source, module, [alias.name for alias in node.names])
    return found


def closure(source: Path, roots: set[str]) -> set[str]:
    """``roots`` and every component file they import, directly or not."""
    needed, pending = set(), set(roots)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending |= _imports(source, name) - needed
    return needed


def bundle_roots(source: Path, bundle: Path) -> set[str]:
    """Component files named by a bundle's configs and by its own scripts (``scripts/*.py``, not the copy)."""
    roots: set[str] = set()
    for config in sorted((bundle / "configs").glob("*.json")):
        for match in CONFIG_REFERENCE.finditer(config.read_text()):
            try:
                roots |= resolve(source, match.group(1).lstrip(".").split("."))
            except ValueError as error:
                raise ValueError(f"{config}: {error}") from None
    scripts = bundle / "scripts"
    for script in sorted(scripts.rglob("*.py")) if scripts.is_dir() else []:
        if "common" in script.relative_to(scripts).parts or "__pycache__" in script.parts:
            continue
        for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            dotted = node.module.split(".")
            if node.level == 1 and dotted[0] == "common":  # from .common.x import y
                module = dotted[1:]
            elif node.level == 0 and dotted[:2] == ["scripts", "common"]:  # from scripts.common.x import y
                module = dotted[2:]
            else:
                continue
            roots |= _imported(source, module, [alias.name for alias in node.names])
    return roots


def bundle_closure(source: Path, bundle: Path) -> set[str]:
    return closure(source, bundle_roots(source, bundle))
