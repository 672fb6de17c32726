"""The import graph of `digitrec`, read from the source (every `import`, also inside functions),
checked against the layers of docs/architecture.md and drawn as docs/import-graph.png.

    python scripts/import_graph.py [--out docs/import-graph.png]

tests/test_architecture.py runs `problems()`: no cycle, no import from a lower layer to a
higher one, and nothing that serving loads reaches training, evaluation or the data sets."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digitrec"

# Layers, lowest first: a part may import its own layer's parts and lower ones, never higher.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "config"),
    ("io", "data"),
    ("preprocess",),
    ("models",),
    ("inference",),
    ("recognizer",),
    ("feedback",),
    ("training",),
    ("evaluation",),
    ("web", "cli", "__main__"),
]
SERVING = ("web", "feedback", "recognizer", "inference", "models", "preprocess", "io", "config",
           "errors")
NOT_FOR_SERVING = ("training", "evaluation", "data", "cli", "__main__")
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    """digitrec.x.y for src/digitrec/x/y.py (packages: their __init__)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    """The top-level part (sub-package or module) of digitrec a module belongs to."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[0] == "digitrec" else None


def _imports(path: Path) -> set[str]:
    """digitrec modules imported anywhere in a file (relative imports resolved). The package's
    own __init__ is the API facade: its lazy `__getattr__` import is not an edge."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    found: set[str] = set()
    skip: set[int] = set()
    if path.name == "__init__.py" and path.parent == PACKAGE:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("digitrec")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + (
                    1 if path.name == "__init__.py" else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("digitrec"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def module_edges() -> dict[str, set[str]]:
    """Every digitrec module → the digitrec modules it imports (existing ones only)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files and m != name}
            for name, path in files.items()}


def part_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importing part, imported part) pairs between different parts of digitrec."""
    pairs = set()
    for source, targets in edges.items():
        for target in targets:
            a, b = part_of(source), part_of(target)
            if a and b and a != b:
                pairs.add((a, b))
    return pairs


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    """Modules that importing `start` can load (transitively)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += edges.get(module, ())
    return seen


def problems() -> list[str]:
    """What breaks the architecture, in words (empty: none)."""
    edges = module_edges()
    out = [f"import cycle: {' ↔ '.join(c)}" for c in _cycles(edges)]
    pairs = part_edges(edges)
    for a, b in sorted(pairs):
        if a not in RANK or b not in RANK:
            out.append(f"{a} → {b}: a part that is in no layer (add it to LAYERS)")
        elif RANK[a] < RANK[b]:
            out.append(f"{a} → {b}: a lower layer imports a higher one")
    out += [f"import cycle between parts: {' ↔ '.join(c)}"
            for c in _cycles({a: {b for x, b in pairs if x == a} for a, _ in pairs})]
    for module in edges:
        if part_of(module) in SERVING:
            for loaded in reachable(edges, module):
                if part_of(loaded) in NOT_FOR_SERVING:
                    out.append(f"serving module {module} loads {loaded}")
    return out


def transitive_reduction(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The pairs without those implied by a longer path (for a readable picture of a DAG)."""
    graph = {a: {b for x, b in pairs if x == a} for a, _ in pairs}

    def longer_path(a: str, b: str) -> bool:
        return any(b in reachable(graph, c) for c in graph.get(a, ()) if c != b)

    return {(a, b) for a, b in pairs if not longer_path(a, b)}


def draw(path: Path) -> None:
    """The parts as boxes in their layers (lowest at the bottom), imports as arrows."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    pairs = transitive_reduction(part_edges(module_edges()))
    position = {"__main__": (0.9, 9.2), "cli": (0.6, 9.2), "web": (0.15, 8.2),
                "evaluation": (0.85, 7.6), "training": (0.85, 5.6), "recognizer": (0.4, 6.8),
                "feedback": (0.45, 7.95),
                "inference": (0.4, 5.4), "models": (0.4, 4.2), "preprocess": (0.4, 3.0),
                "io": (0.2, 1.8), "data": (0.85, 2.4), "errors": (0.25, 0.4),
                "config": (0.6, 0.8)}
    fig = Figure(figsize=(7, 8.5))
    ax = fig.subplots()
    for a, b in sorted(pairs):
        (x0, y0), (x1, y1) = position[a], position[b]
        dx, dy = (x1 - x0) * 7, (y1 - y0) * 0.8  # in inches, roughly: wide boxes need more room
        shrink = 14 + 26 * abs(dx) / max(1e-6, (dx * dx + dy * dy) ** 0.5)
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=11,
                                     color="#6b7280", lw=0.9, shrinkA=shrink, shrinkB=shrink))
    for part, (x, y) in position.items():
        serving = part in SERVING
        ax.text(x, y, part, ha="center", va="center", fontsize=11,
                bbox={"boxstyle": "round,pad=0.45", "fc": "#dbeafe" if serving else "#fef3c7",
                      "ec": "#1d4ed8" if serving else "#b45309"})
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.2, 9.8)
    ax.axis("off")
    ax.set_title("digitrec: imports between parts (arrow: imports; an import implied by a path\n"
                 "of arrows is not drawn). Blue: what serving loads; amber: never loaded by "
                 "serving.\nEvery arrow points down a layer or along one: no cycle.", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Check the graph, print the problems, draw the picture; exit 1 on a problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/import-graph.png")
    args = parser.parse_args()
    found = problems()
    for problem in found:
        print(problem)
    draw(Path(args.out))
    print(f"wrote {args.out}; {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
