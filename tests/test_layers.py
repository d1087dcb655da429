"""The house style's import directions, checked on every module's source (imports inside functions included):
models are plain torch, data knows no model, tasks receive tensors. A new file is checked the moment it exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lit_i2v"

# layer -> the lit_i2v layers and third-party packages it must not import
FORBIDDEN = {
    "ops": {"lit_i2v.backbones", "lit_i2v.data", "lit_i2v.tasks", "lit_i2v.strategies", "lit_i2v.heads",
            "lit_i2v.pretrain", "lit_i2v.extract", "lit_i2v.cli", "lightning"},  # operators: torch alone
    "backbones": {"lit_i2v.data", "lit_i2v.tasks", "lit_i2v.strategies", "lit_i2v.heads", "lit_i2v.pretrain",
                  "lit_i2v.extract", "lit_i2v.cli", "lightning"},
    "strategies": {"lit_i2v.data", "lit_i2v.tasks", "lit_i2v.heads", "lit_i2v.pretrain", "lit_i2v.cli", "lightning"},
    "heads": {"lit_i2v.data", "lit_i2v.tasks", "lit_i2v.strategies", "lit_i2v.pretrain", "lit_i2v.cli", "lightning"},
    "data": {"lit_i2v.backbones", "lit_i2v.strategies", "lit_i2v.heads", "lit_i2v.tasks", "lit_i2v.pretrain",
             "lit_i2v.extract", "lit_i2v.cli"},
    "tasks": {"lit_i2v.data", "lit_i2v.pretrain", "lit_i2v.extract", "lit_i2v.cli"},
}  # fmt: skip


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_the_house_style_allows(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imports(path):
            hit = [f for f in FORBIDDEN[layer] if module == f or module.startswith(f"{f}.")]
            bad += [f"{path.relative_to(PACKAGE.parent)} imports {module}" for _ in hit]
    assert not bad, "\n".join(bad)
