"""dicube/_native.pyi: declares exactly what the compiled module has (names, kinds, argument
names and defaults, attribute types), and mypy checks the facade's calls through it."""
from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal, Optional

from dicube import _native

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "dicube" / "_native.pyi"
#: The modules that call dicube._native (the facade).
FACADE = [ROOT / "dicube" / "codecs"]


def _stub() -> tuple[dict, dict]:
    """(functions: name -> [(arg, has_default)], attributes: name -> annotation source)."""
    tree = ast.parse(STUB.read_text())
    funcs, attrs = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            assert not (a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs), node.name
            first_default = len(a.args) - len(a.defaults)
            funcs[node.name] = [(x.arg, i >= first_default) for i, x in enumerate(a.args)]
        elif isinstance(node, ast.AnnAssign):
            attrs[node.target.id] = ast.unparse(node.annotation)
    return funcs, attrs


def _runtime_args(func) -> list:
    """[(arg, has_default)] from pybind11's signature line (the first of its docstring)."""
    line = func.__doc__.splitlines()[0]
    inner = line[line.index("(") + 1:line.rindex(") ->")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [(p.split(":")[0].strip(), "=" in p) for p in parts if p.strip()]


def _matches(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin is typing.Union:
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    return isinstance(value, tp) and not (tp is int and isinstance(value, bool))


def test_stub_declares_exactly_the_module():
    funcs, attrs = _stub()
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert set(funcs) | set(attrs) == public
    for name, args in funcs.items():
        assert callable(getattr(_native, name)), name
        assert _runtime_args(getattr(_native, name)) == args, name
    for name, annotation in attrs.items():
        value = getattr(_native, name)
        assert not callable(value), name
        tp = eval(annotation, {"Optional": Optional, "Literal": Literal})  # noqa: S307 - our own stub
        assert _matches(value, tp), (name, value, annotation)


def _mypy(*paths, cwd=ROOT) -> list:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null", "--follow-imports=silent",
         "--check-untyped-defs", "--no-error-summary", "--show-absolute-path", *map(str, paths)],
        capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode in (0, 1) and "No module named" not in proc.stderr, proc.stderr  # mypy: test extra
    return [line for line in proc.stdout.splitlines() if ": error:" in line]


def _about_native(error: str) -> bool:
    path, line = error.split(":")[:2]
    source = Path(path).read_text().splitlines()[int(line) - 1]
    return "native" in source or "_native" in error


def test_mypy_accepts_the_facade_calls_through_the_stub(tmp_path):
    (tmp_path / "wrong_calls.py").write_text(
        "from dicube import _native\n"
        "_native.encode(b'x', 8, 5, 64, 64, 'RPCL', False, True, True)\n"      # bytes, not an array
        "n: str = _native.crc32c(b'x')\n"                                       # returns int
        "_native.decode_file_regions(3, 0)\n"                                   # arguments missing
        "_native.no_such_function()\n")
    errors = _mypy(*FACADE, tmp_path / "wrong_calls.py")
    wrong = [e for e in errors if "wrong_calls.py" in e]
    # The stub is what mypy reads: each wrong call is caught.
    assert sorted(int(e.split(":")[1]) for e in wrong) == [2, 3, 4, 5], wrong
    facade = [e for e in errors if "wrong_calls.py" not in e and _about_native(e)]
    assert facade == []
