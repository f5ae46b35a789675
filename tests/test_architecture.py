"""The architecture of docs/architecture.md, kept true: the layer table there, the import-linter
contracts in pyproject.toml and the modules in src/ agree; the contracts hold (and do fail when an
import goes up a layer or a new module is left out); no import cycle exists, deferred imports
included; no module imports another's private names; no helper is defined twice; no module
grows past about 400 lines unless its docstring says why."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "etlguard"
DOC = ROOT / "docs" / "architecture.md"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LONG = 450  # "about 400": past this a module is split, or its docstring says why it is long
LONG_REASON = "Why this module is long:"


def top_level_modules() -> set[str]:
    files = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    return files | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def doc_layers() -> list[set[str]]:
    """The `| layer | modules |` rows of the Layers section, top first."""
    section = DOC.read_text(encoding="utf-8").split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \w+ \| `", line)]
    return [{m.removesuffix(".py").rstrip("/") for m in re.findall(r"`([^`]+)`", row)} for row in rows]


def contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    [found] = [c for c in config["contracts"] if c["id"] == contract_id]
    return found


def contract_layers() -> list[set[str]]:
    layers = contract("layers")["layers"]
    assert isinstance(layers, list)
    return [{m.strip() for m in re.split(r"[:|]", layer)} for layer in layers]


def test_the_documented_layers_are_the_contract_and_name_every_module() -> None:
    documented = doc_layers()
    assert len(documented) == 6, documented
    assert documented == contract_layers()
    named = set().union(*documented)
    assert named - top_level_modules() == set(), "docs/architecture.md names modules that do not exist"
    assert top_level_modules() - named == set(), "modules missing from the layer table"


def test_every_module_file_the_architecture_note_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"\b([\w/]+\.py)\b", text)) | set(re.findall(r"`(\w+)/`", text))
    files = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    known = files | {Path(f).name for f in files} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert {n for n in named - known if not (ROOT / n).exists()} == set()


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(src), "PATH": str(LINT_IMPORTS.parent), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contracts_hold() -> None:
    checked = lint_imports(ROOT / "src")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 kept, 0 broken" in checked.stdout


BREAKS = {
    "an import up a layer": ("errors.py", "\nfrom . import guard  # noqa\n", "layers"),
    "a module left out of the layers": ("newfeature.py", '"""not in any layer"""\n', "layers"),
    "an adapter built on another": ("adapters/postgres.py", "\nfrom . import mysql  # noqa\n", "adapters"),
}


@pytest.mark.parametrize("change", sorted(BREAKS))
def test_a_broken_contract_fails_lint(change: str, tmp_path: Path) -> None:
    name, text, contract_id = BREAKS[change]
    copy = tmp_path / "src" / "etlguard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / name).open("a", encoding="utf-8") as f:
        f.write(text)
    checked = lint_imports(tmp_path / "src")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{contract(contract_id)['name']} BROKEN" in checked.stdout


# -- the import graph, read from the source --------------------------------------------------------


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def runtime_imports(module: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(imported module, imported name) for every import outside `if TYPE_CHECKING:`, at any
    depth: an import inside a function hides a cycle, it does not remove it."""
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    is_package = module in {m.rsplit(".", 1)[0] for m in modules_cache if "." in m} or module == "etlguard"
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                yield target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""


modules_cache = modules()


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, tree in modules_cache.items():
        for target, name in runtime_imports(module, tree):
            sub = f"{target}.{name}"
            imported = sub if sub in modules_cache else target
            if imported in modules_cache and imported != module:
                edges[module].add(imported)
    return edges


def test_no_import_cycles_deferred_imports_included() -> None:
    edges, cycles = graph(), []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(modules_cache):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{module} imports {target}.{name}"
        for module, tree in modules_cache.items()
        for target, name in runtime_imports(module, tree)
        if name.startswith("_") and not name.startswith("__") and target in modules_cache and target != module
    ]
    assert private == []


def test_no_helper_is_defined_twice() -> None:
    where = defaultdict(list)
    for module, tree in modules_cache.items():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("__"):
                where[node.name].append(module)
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}


def test_long_modules_say_why() -> None:
    long = {
        str(path.relative_to(PACKAGE)): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > LONG
        and LONG_REASON not in (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "")
    }
    assert long == {}, f"split these, or say in the docstring '{LONG_REASON} ...'"
