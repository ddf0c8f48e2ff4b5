"""The import graph of dicube follows its layers (docs/architecture.md shows this table; the
table below is the one place it is defined): no module imports a module of a higher layer,
the components import each other without cycles, and DICOM (pydicom) stays out of the
container, codec and image-model layers. Imports inside functions count; the lazy names of
``dicube/__init__.py`` (strings) do not."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dicube"

#: (layer, component, module prefixes), lowest layer first. A module belongs to the
#: component of its longest matching prefix; it may import its own component and any
#: component of a lower or equal layer, and components must not import each other in a cycle.
LAYERS = [
    (0, "base", ["dicube", "dicube.exceptions", "dicube.jsontext", "dicube.windows",
                 "dicube._native"]),
    (1, "codecs", ["dicube.codecs"]),
    (2, "storage", ["dicube.storage"]),
    (3, "dicom.dataset", ["dicube.dicom.dicom_json", "dicube.dicom.dicom_tags",
                          "dicube.dicom.dicom_meta", "dicube.dicom.merge_utils",
                          "dicube.dicom.meta_validation", "dicube.dicom.dicom_status",
                          "dicube.dicom.file_parser", "dicube.dicom.geometry",
                          "dicube.dicom.part10", "dicube.dicom.photometric",
                          "dicube.dicom.lossy"]),
    (4, "core", ["dicube.core"]),
    (5, "dicom.series", ["dicube.dicom"]),
    (6, "data", ["dicube.data", "dicube.torch", "dicube.monai"]),
    (6, "preview", ["dicube.preview"]),
    (7, "server", ["dicube.server"]),
    (8, "cli", ["dicube.cli", "dicube.__main__", "dicube.commands", "dicube.demo"]),
]
#: Components that hold no DICOM reading or writing (pydicom is for dicube.dicom and above).
NO_PYDICOM = ("base", "codecs", "storage", "core")


def component(module: str) -> tuple:
    best = max(((len(p), layer, name) for layer, name, prefixes in LAYERS for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[1], best[2]


def _modules() -> dict:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        out[name] = (path, is_pkg)
    return out


MODULES = _modules()


def imports(module: str) -> list:
    """(imported dicube module, line) of every import statement in ``module``; third-party
    modules as (name, line) too."""
    path, is_pkg = MODULES[module]
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:  # "from pkg import submodule" imports the submodule
                sub = f"{base}.{a.name}"
                out.append((sub if sub in MODULES else base, node.lineno))
    return out


def _edges() -> dict:
    edges = {}
    for module in MODULES:
        for target, line in imports(module):
            if target == "dicube" or target.startswith("dicube."):
                edges.setdefault((module, _known(target)), line)
    return edges


def _known(target: str) -> str:
    while target not in MODULES:  # e.g. "dicube.__version__": the package that defines it
        target = target.rsplit(".", 1)[0]
    return target


def test_every_module_is_in_a_layer():
    for module in MODULES:
        component(module)


def test_no_import_climbs_a_layer():
    upward = []
    for (src, dst), line in sorted(_edges().items()):
        (ls, cs), (ld, cd) = component(src), component(dst)
        if ld > ls:
            upward.append(f"{src}:{line} ({cs}, layer {ls}) imports {dst} ({cd}, layer {ld})")
    assert not upward, "imports climbing a layer:\n" + "\n".join(upward)


def test_no_import_cycles_between_components():
    graph = {}
    for (src, dst) in _edges():
        a, b = component(src)[1], component(dst)[1]
        if a != b:
            graph.setdefault(a, set()).add(b)
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles between components: " + "; ".join(cycles)


@pytest.mark.parametrize("name", NO_PYDICOM)
def test_dicom_reading_and_writing_live_in_dicom(name):
    found = [f"{m}:{line} imports {t}" for m in MODULES if component(m)[1] == name
             for t, line in imports(m) if t == "pydicom" or t.startswith("pydicom.")]
    assert not found, f"{name} must not read or write DICOM:\n" + "\n".join(found)


def test_the_table_is_the_one_in_the_docs():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert "tests/test_import_layers.py" in doc
    for _layer, name, _prefixes in LAYERS:
        assert f"`{name}`" in doc, f"docs/architecture.md does not show component {name}"


def test_one_module_holds_the_photometric_rules():
    """Previews convert YBR with the rules of dicube.dicom.photometric, not a copy of them."""
    import numpy as np

    from dicube.dicom.photometric import ybr_to_rgb
    from dicube.preview import colour

    source = (PACKAGE / "preview" / "colour.py").read_text()
    assert "0.5870" not in source and "linalg" not in source  # no matrix of its own
    ybr = np.random.default_rng(1).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    for name in ("YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420"):
        shown = colour.to_display(ybr, colour.Photometric(name, 8))
        np.testing.assert_array_equal(shown, ybr_to_rgb(ybr, name, 8))
    assert ybr_to_rgb(ybr, "YBR_RCT") is None  # decoded JPEG 2000: already RGB
