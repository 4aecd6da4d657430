"""The package's layers, held to the code: each imports only the layers below it.

The rule is the one ``bridge/__init__.py`` draws. A test rather than a convention, so
that a shortcut (the call reaching into the web layer, a protocol importing the call
that uses it, a layer importing the simulator) fails here before it is merged.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bridge"

FOUNDATION = {"config", "observability", "threads", "http_opener"}
PROTOCOLS = {"gemini", "twilio", "tools", "audio", "state", "hooks"}
# What each layer may import of the bridge, besides itself.
MAY_IMPORT: dict[str, set[str]] = {
    "config": set(),
    "threads": set(),
    "http_opener": set(),
    "observability": {"config"},
    "audio": set(),
    "state": set(),
    "hooks": {"config", "observability", "threads", "state", "http_opener"},
    "gemini": {"config", "observability"},
    "twilio": {"config", "observability", "threads"},
    "tools": {"gemini", "config", "observability", "threads", "http_opener"},
    "call": PROTOCOLS | FOUNDATION,
    "runtime": {"call"} | PROTOCOLS | FOUNDATION,
    "web": {"runtime", "call"} | PROTOCOLS | FOUNDATION,
    "commands": {"web", "runtime", "call", "testing"} | PROTOCOLS | FOUNDATION,
    "testing": {"web", "runtime", "call"} | PROTOCOLS | FOUNDATION,
    "cli": {"commands", "web", "runtime", "testing"} | {"call"} | PROTOCOLS | FOUNDATION,
    "__main__": {"cli"},
}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_layers(path: Path) -> set[str]:
    """The bridge's top-level packages ``path`` imports (relative or absolute)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = here[:-1]  # a module's package; an __init__'s own
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if len(target) == 1:  # from .. import name: the name is the layer
                    target += [alias.name for alias in node.names][:1]
            else:
                target = (node.module or "").split(".")
            if target[0] == "bridge" and len(target) > 1:
                found.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "bridge" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_layer_imports_only_the_layers_below_it() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        if layer == "__init__":
            continue
        assert layer in MAY_IMPORT, f"{path}: a layer the rule does not name"
        for other in imported_layers(path) - {layer} - MAY_IMPORT[layer]:
            broken.append(f"{path.relative_to(PACKAGE.parent)} imports bridge.{other}")
    assert broken == []


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if init.parent == PACKAGE:
            assert "layers" in doc, init
            continue
        assert "May import" in doc or "may import" in doc, init
