"""Finding the user's App: `path/to/file.py[:attr]` or `package.module[:attr]`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from corral.app import App
from corral.errors import CorralError, UsageError

T = TypeVar("T")


def load_app(ref: str) -> App:
    """Import the module a reference names and return its App (attribute `app` by default)."""
    target, _, attr = ref.partition(":") if not _is_windows_drive(ref) else (ref, "", "")
    attr = attr or "app"
    if target.endswith(".py") or os.sep in target:
        module = _import_file(Path(target))
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = _run_user_code(ref, lambda: _import_module(target))
    app = getattr(module, attr, None)
    if app is None:
        raise UsageError(f"--app {ref}: {target} has no attribute {attr!r}")
    if not isinstance(app, App):
        raise UsageError(f"--app {ref}: {attr!r} is a {type(app).__name__}, not a corral App")
    return app


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise UsageError(f"--app {path}: no such file")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--app {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Let the file import its neighbours, as `python file.py` would.
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    loader = spec.loader
    try:
        _run_user_code(str(path), lambda: loader.exec_module(module))
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(target: str) -> object:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(f"{exc.name}.")):
            raise UsageError(f"cannot import {target!r} for --app: {exc}") from None
        raise  # a module that the user's module imports


def _run_user_code(ref: str, action: Callable[[], T]) -> T:
    """Import the user's module: an exception of theirs (a syntax error, a failed import of
    theirs, a bug, a `sys.exit()`) is their app not loading, said in one line naming the
    file and line where it happened; the cause stays chained for `--traceback`. corral's own
    errors (a bad job declaration, …) go through as they are."""
    try:
        return action()
    except CorralError:
        raise
    except (Exception, SystemExit) as exc:
        raise UsageError(
            f"--app {ref}: {where(exc)}{describe(exc)}; fix it, or run with --traceback to "
            "see the whole trace"
        ) from exc


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`."""
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while loading"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def where(exc: BaseException) -> str:
    """`FILE line N: ` where the user's code raised `exc`: for a syntax error, where the
    parser stopped; else the innermost frame of the user's own code (not the standard
    library's, an installed package's or corral's), or the innermost frame at all."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename} line {exc.lineno}: "
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and Path(f.filename).resolve() != _HERE
    ]
    if not frames:
        return ""
    own = [f for f in frames if not _installed(f.filename)]
    frame = (own or frames)[-1]
    return f"{frame.filename} line {frame.lineno}: "


_HERE = Path(__file__).resolve()
_CORRAL = _HERE.parent


def _installed(filename: str) -> bool:
    """Whether a file belongs to Python, an installed package, or corral itself."""
    path = Path(filename).resolve()
    if path.is_relative_to(_CORRAL):
        return True
    return any(path.is_relative_to(root) for root in _library_roots())


def _library_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return [Path(paths[n]).resolve() for n in names if n in paths]


def _is_windows_drive(ref: str) -> bool:
    return len(ref) > 1 and ref[1] == ":" and ref[0].isalpha() and os.name == "nt"
