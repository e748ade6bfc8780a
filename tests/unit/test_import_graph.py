"""The import rules that import-linter cannot state (``make lint`` runs this file after ``lint-imports``).

- No import cycle at all among the modules of ``ticker`` and ``feeds``: late (function-level) imports and
  ``if TYPE_CHECKING:`` imports count like the others.
- Every top-level module of ``ticker/`` is pure core: it is listed in setup.cfg's pure-core contract, so a
  new one is checked from the day it is added; the package's ``__init__`` imports only such modules.
"""

from __future__ import annotations

import configparser
import itertools
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ticker", "feeds")
NOT_CORE = {"__init__", "__main__"}  # __main__ is `python -m ticker`, the command line's door


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        todo = [iter(sorted(edges[start]))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(iter(sorted(edges.get(nxt, ()))))
    return None


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = ["import cycle: " + " -> ".join(cycle)]
    for importer, imported in itertools.pairwise(cycle):
        for detail in graph.get_import_details(importer=importer, imported=imported):
            lines.append(f"  {importer} line {detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def test_find_cycle_reports_a_cycle_and_accepts_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}) == ["b", "c", "d", "b"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_no_import_cycle_in_ticker_and_feeds(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert sum(map(len, edges.values())) > 100  # the graph was really built
    cycle = find_cycle(edges)
    assert cycle is None, describe(graph, cycle)


def pure_core_contract() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["importlinter:contract:pure-core"]["source_modules"].split())


def test_every_top_level_module_of_ticker_is_in_the_pure_core_contract(graph: grimp.ImportGraph) -> None:
    top_level = {f"ticker.{p.stem}" for p in (ROOT / "ticker").glob("*.py") if p.stem not in NOT_CORE}
    listed = pure_core_contract()
    assert top_level - listed == set(), "add these to [importlinter:contract:pure-core] in setup.cfg"
    assert listed - top_level == set(), "these are listed in the pure-core contract but do not exist"
    assert set(graph.find_modules_directly_imported_by("ticker")) <= listed
