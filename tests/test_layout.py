"""Package shape: every module imports, and the library never imports Ray, jobs or serve."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import unlearn

ROOT = Path(__file__).resolve().parents[1]


def library_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(unlearn.__path__, "unlearn.")]


def test_library_source_never_imports_ray_jobs_or_serve():
    offenders = []
    for path in (ROOT / "unlearn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.split(".")[0] in {"ray", "jobs", "serve"}
            ]
    assert offenders == []


def test_every_library_module_imports_without_loading_ray():
    code = (
        "import importlib, sys\n"
        f"for m in {library_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
