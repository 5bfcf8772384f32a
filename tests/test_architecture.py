"""Imports point one way (core -> models -> features -> cli), no cycles between feature packages, no private
name imported from another module, and one attention: no feature builds attention weights itself."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sb3_masked_attention"
LAYERS = {
    "core": {"masks", "strategies", "attention", "wrappers", "validation", "io", "runs", "environments", "episodes"}
    | {"cli_args", "source_values", "lazy", "machine"},
    "models": {
        "registration",
        "extractors",
        "policies",
        "callbacks",
        "checkpoints",
        "zoo",
        "samplers",
        "weights",
        "transformer_ppo",
    },
    "features": {
        "training",
        "training_commands",
        "multiscale_training",
        "multiscale_commands",
        "multiscale_play",
        "evaluation",
        "analysis",
        "ad",
        "pretrain",
        "sequence",
        "rl_zoo",
    },
    "cli": {"cli"},
}
RANK = {unit: rank for rank, units in enumerate(LAYERS.values()) for unit in units}


def unit_of(module: str) -> str:
    """``sb3_masked_attention.ad.train`` -> ``ad``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports() -> list[tuple[str, str, list[str], Path]]:
    """(importing module, imported module, imported names, file) for every package-internal import."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sb3_masked_attention"):
                found.append((module, node.module, [alias.name for alias in node.names], path))
    return found


def test_every_module_belongs_to_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert units - {"__init__"} == set(RANK), f"unplaced: {units - {'__init__'} - set(RANK)}"


def test_imports_point_down_the_layers():
    wrong = [
        f"{src} imports {dst}"
        for src, dst, _, _ in imports()
        if unit_of(src) and unit_of(dst) and RANK[unit_of(dst)] > RANK[unit_of(src)]
    ]
    assert not wrong, wrong


def test_no_cycles_between_packages():
    edges = {(unit_of(s), unit_of(d)) for s, d, _, _ in imports() if unit_of(s) and unit_of(d) and unit_of(s) != unit_of(d)}
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a, b in edges if reaches(b, a, {b}))
    assert not cycles, cycles


def test_no_private_names_imported_across_modules():
    private = [f"{src} imports {dst}.{name}" for src, dst, names, _ in imports() for name in names if name.startswith("_")]
    assert not private, private


def test_one_attention_core():
    """Softmax over attention scores and SDPA calls live in attention.py only."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "attention.py":
            continue
        text = path.read_text()
        if re.search(r"scaled_dot_product_attention\(|nn\.MultiheadAttention\(|@ *\w+\.transpose\(-2, -1\)", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, offenders
