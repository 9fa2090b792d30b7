"""The layers as the README draws them, read from the code: the foundation (services/core) imports nothing above
it, the domain (services) imports neither the shell (app) nor the widgets (components), the widgets not the shell,
no module imports itself round a circle, and the client code that runs inside other processes (the LiteLLM callback,
the SDK, the response helper) needs only httpx and the standard library; the CLI loads the database layer only for
--db."""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ('app', 'components', 'services')
CLIENT = 'services.integrations'


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob('*.py'):
            if 'migrations' in path.parts:  # Alembic's scripts, loaded by Alembic, not imported
                continue
            name = '.'.join(path.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__')
            found[name] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that `path` imports, at the top or inside a function (`from a.b import c` counts a.b.c
    when c is a module, else a.b)."""
    result = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f'{node.module}.{alias.name}'
                result.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            result.update(alias.name for alias in node.names)
    return {name for name in result if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def third_party_imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split('.')[0])
        elif isinstance(node, ast.Import):
            roots.update(alias.name.split('.')[0] for alias in node.names)
    return roots


def test_the_foundation_imports_nothing_above_it() -> None:
    upward = {f'{m} -> {d}' for m, deps in graph().items() if m.startswith('services.core')
              for d in deps if not d.startswith('services.core')}
    assert not upward


def test_the_domain_imports_neither_the_shell_nor_the_widgets() -> None:
    upward = {f'{m} -> {d}' for m, deps in graph().items() if m.startswith('services')
              for d in deps if d.startswith(('app', 'components'))}
    assert not upward


def test_the_widgets_do_not_import_the_shell() -> None:
    upward = {f'{m} -> {d}' for m, deps in graph().items() if m.startswith('components') for d in deps
              if d.startswith('app')}
    assert not upward


def test_no_module_imports_itself_round_a_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for node in edges:
        if node not in index:
            visit(node)
    assert circles == []


def test_the_circle_check_finds_a_circle(tmp_path: Path) -> None:
    """The checker above is not vacuous: two modules that import each other are one component."""
    (tmp_path / 'a.py').write_text('from b import x\n')
    (tmp_path / 'b.py').write_text('import a\nx = 1\n')
    known = {'a': tmp_path / 'a.py', 'b': tmp_path / 'b.py'}
    assert imports_of(known['a'], known) == {'b'} and imports_of(known['b'], known) == {'a'}


def _closure(distribution: str, seen: set[str]) -> set[str]:
    name = distribution.lower().replace('-', '_')
    if name in seen:
        return seen
    seen.add(name)
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({'extra': ''}):
            _closure(requirement.name, seen)
    return seen


def test_client_code_imports_only_httpx_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {'httpx', 'services', '__future__', 'litellm'}
    for name, path in modules().items():
        if name.startswith(CLIENT):
            assert third_party_imports(path) <= allowed, f'{name}: {third_party_imports(path) - allowed}'


def test_client_code_loads_where_only_httpx_is_installed(tmp_path: Path) -> None:
    """In a fresh interpreter without site-packages, given only httpx and what httpx needs: the callback, the SDK
    and the response helper import and build their clients; NiceGUI, SQLAlchemy and pydantic are not there."""
    packages = tmp_path / 'site'
    packages.mkdir()
    wanted = _closure('httpx', set())
    for module, distributions in importlib.metadata.packages_distributions().items():
        if any(d.lower().replace('-', '_') in wanted for d in distributions):
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin is not None
            origin = Path(spec.origin)
            source = origin.parent if origin.name == '__init__.py' else origin
            (packages / source.name).symlink_to(source)
    (packages / 'services').mkdir()  # the client package alone, not the rest of services
    (packages / 'services' / '__init__.py').write_text('')
    (packages / 'services' / 'integrations').symlink_to(ROOT / 'services' / 'integrations')
    script = """
import sys
sys.path.insert(0, sys.argv[1])
for absent in ('nicegui', 'sqlalchemy', 'pydantic', 'fastapi', 'litellm'):
    try:
        __import__(absent)
    except ImportError:
        continue
    raise SystemExit(f'{absent} should not be importable here')
from services.integrations import client, litellm_logger, sdk
with sdk.SpendGauge('http://127.0.0.1:9', timeout=1) as gauge:  # nothing listens there: it fails open
    assert gauge.check(agent_id='a')['decision'] == 'allow'
assert litellm_logger.SpendGaugeLogger(url='http://127.0.0.1:9').close(timeout=1)
assert client.__name__ == 'services.integrations.client'
print('ok')
"""
    result = subprocess.run([sys.executable, '-I', '-S', '-c', script, str(packages)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_the_cli_loads_without_the_database_layer_or_the_server() -> None:
    """A command through a server (`status`, `check`, ...) starts in a fraction of a second: the database layer loads
    only for --db (app/cli/direct.py), the server only for serve."""
    heavy = ('sqlalchemy', 'sqlmodel', 'alembic', 'nicegui', 'fastapi', 'genai_prices', 'apscheduler')
    script = (f'import sys, app.cli.main; print(sorted({{m.split(".")[0] for m in sys.modules}} & {set(heavy)!r}))')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]', f'app.cli.main loads {result.stdout.strip()}'
