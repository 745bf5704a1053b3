"""Package shape: every module imports, the library never names its shells, no import circles."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the top-level parts; the library is first and depends on none of the others
PARTS = ("unlearn", "cli", "jobs", "serve", "bench")
IMPORTABLE = ("unlearn", "cli", "jobs", "serve")
SHELL_WORDS = re.compile(r"\b(jobs|serve|ray)\b", re.IGNORECASE)


def modules(part: str) -> list[str]:
    """Every module under a part's folder, with or without ``__init__.py`` on the way."""
    out = []
    for path in sorted((ROOT / part).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        names = list(rel.parts)
        if names[-1] == "__init__":
            names = names[:-1]
        if names[-1] != "__main__":
            out.append(".".join(names))
    return out


def imported_parts(path: Path) -> set[str]:
    """The top-level parts a file imports (anywhere in it, function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & set(PARTS)
    return found


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in PARTS}
    for part in PARTS:
        for path in (ROOT / part).rglob("*.py"):
            graph[part] |= imported_parts(path) - {part}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in graph:
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_library_text_never_names_its_shells():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "unlearn").rglob("*"))
        if path.is_file() and path.suffix in (".py", ".txt", ".json", ".yaml", ".md")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SHELL_WORDS.search(line)
    ]
    assert offenders == []


def test_library_imports_no_other_part():
    assert part_graph()["unlearn"] == set()


def test_no_import_circle_between_parts():
    graph = part_graph()
    assert find_cycle(graph) is None, graph
    assert graph["cli"] >= {"unlearn", "jobs"}  # the command line is the outermost shell


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_and_the_library_alone_loads_no_ray():
    library = modules("unlearn")
    assert "unlearn.engine.loop" in library and "unlearn.eval.merge" in library
    shells = [m for p in IMPORTABLE[1:] for m in modules(p)]
    assert "jobs.eval" in shells and "cli.guard" in shells
    code = (
        "import importlib, sys\n"
        f"for m in {library!r}:\n"
        "    importlib.import_module(m)\n"
        "assert 'ray' not in sys.modules, 'the library imported ray'\n"
        f"for m in {shells!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_the_engine_loop_names_no_method():
    from unlearn.methods import METHODS

    text = (ROOT / "unlearn" / "engine" / "loop.py").read_text()
    named = [m for m in METHODS if re.search(rf"\b{re.escape(m)}\b", text, re.IGNORECASE)]
    assert named == []
    assert "hasattr(" not in text and "getattr(method" not in text


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
