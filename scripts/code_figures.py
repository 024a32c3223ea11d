"""Function-length and module-size figures of the three packages: the longest functions, the largest
modules, and how many pass the house's soft limits (60 lines a function, 400 a module).

    python scripts/code_figures.py                 # app/, fer_core/, training/ of this checkout
    python scripts/code_figures.py --root ../other  # another checkout (a worktree of main, say)

A function's length runs from its ``def`` line (decorators not counted) to its last line, docstring and
comments included; a nested function or a method counts on its own and inside its enclosing one. A
module's size is its number of lines.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

PACKAGES = ("app", "fer_core", "training")
LONG_FUNCTION = 60
LARGE_MODULE = 400
SHOWN = 10


class Function(NamedTuple):
    name: str  # path:qualified.name
    lines: int


def python_files(root: Path, packages: Sequence[str] = PACKAGES) -> list[Path]:
    return sorted(path for package in packages for path in (root / package).rglob("*.py"))


def functions(tree: ast.Module, where: str) -> Iterator[Function]:
    def visit(node: ast.AST, prefix: str) -> Iterator[Function]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                yield Function(f"{where}:{name}", (child.end_lineno or child.lineno) - child.lineno + 1)
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    return visit(tree, "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout")
    args = parser.parse_args(argv)
    root: Path = args.root
    module_lines: dict[str, int] = {}
    all_functions: list[Function] = []
    files = python_files(root)
    if not files:
        parser.error(f"{root} holds no {', '.join(PACKAGES)} modules")
    for path in files:
        where = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        module_lines[where] = len(source.splitlines())
        all_functions.extend(functions(ast.parse(source, filename=where), where))

    print(f"{len(module_lines)} modules, {sum(module_lines.values()):,} lines, {len(all_functions):,} functions")
    print(f"\n{SHOWN} longest functions:")
    for function in sorted(all_functions, key=lambda function: -function.lines)[:SHOWN]:
        print(f"  {function.lines:5d}  {function.name}")
    print(f"\n{SHOWN} largest modules:")
    for where, lines in sorted(module_lines.items(), key=lambda item: -item[1])[:SHOWN]:
        print(f"  {lines:5d}  {where}")
    long_functions = sum(function.lines > LONG_FUNCTION for function in all_functions)
    large_modules = sum(lines > LARGE_MODULE for lines in module_lines.values())
    print(f"\nfunctions over {LONG_FUNCTION} lines: {long_functions}")
    print(f"modules over {LARGE_MODULE} lines: {large_modules}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
