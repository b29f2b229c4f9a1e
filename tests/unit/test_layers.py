"""The package's layers (wgbot.LAYERS): every module imports only modules of a lower layer, so there is no
import cycle, whether the import is at the top, inside a function or under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import wgbot
from wgbot import LAYERS

PACKAGE = Path(wgbot.__file__).parent


def rank_of() -> dict[str, int]:
    return {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, sibling module) for every import of a wgbot module in `path`, wherever it stands."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("wgbot.")]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            parts = node.module.split(".")
            if parts[0] != "wgbot":
                continue
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:  # from wgbot import x, y
                found += [(node.lineno, a.name) for a in node.names if a.name not in ("LAYERS", "__version__")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.name}:{node.lineno}: relative import; write `from wgbot.x import ...`")
    return found


def upward_imports() -> list[str]:
    ranks = rank_of()
    problems = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        mine = ranks[path.stem]
        for line, other in imported(path):
            if ranks.get(other, len(LAYERS)) >= mine:
                problems.append(f"{path.name}:{line} imports {other} (layer {ranks.get(other)} >= {mine})")
    return problems


def test_every_module_has_a_layer() -> None:
    """Each module of the package is named exactly once in wgbot.LAYERS, and nothing else is."""
    names = [name for layer in LAYERS for name in layer]
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert sorted(names) == sorted(set(names)), "a module is named twice in LAYERS"
    assert set(names) == modules


def test_imports_only_go_down() -> None:
    """No module imports a module of its own or a higher layer: the import graph has no cycle."""
    assert upward_imports() == []


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    """An import inside a function, under TYPE_CHECKING or as `from wgbot import x` is read like any other."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wgbot.commands import X\n"
                      "def f():\n    from wgbot import inbox, LAYERS\n    import wgbot.web\n", encoding="utf-8")
    assert imported(source) == [(3, "commands"), (5, "inbox"), (6, "web")]


def private_uses() -> list[str]:
    """`from wgbot.x import _y` and `x._y` for a sibling module x, in every module of the package."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    problems = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wgbot"):
                problems += [f"{path.name}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                  and node.attr.startswith("_") and not node.attr.startswith("__")):
                problems.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return problems


def test_no_private_name_crosses_a_module() -> None:
    """A name with a leading underscore is used only in its own module: what others need is public."""
    assert private_uses() == []


def calls_of(names: set[str]) -> list[str]:
    """`module:line name` for every call of a function called one of `names`, bare or as an attribute."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in names:
                    found.append(f"{path.stem}:{node.lineno} {name}")
    return found


def test_mail_from_a_template_is_queued_in_one_place() -> None:
    """Writing a message from a template (render.compose) and queueing it happen together only in
    outbox.mail, which Context.mail wraps: one place decides the envelope, the rate limit and the transaction."""
    assert [c for c in calls_of({"compose"}) if not c.startswith("outbox:")] == []
    assert [c for c in calls_of({"enqueue"}) if not c.startswith("outbox:")] == []
