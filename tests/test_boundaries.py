"""Import boundaries: the core stays pure and cheap to import; the app server never loads TensorFlow (so
the TF/WebRTC import-order crash cannot happen there), and the guard against that crash stays in place."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180, check=False
    )


def test_importing_fer_core_loads_neither_streamlit_nor_tensorflow() -> None:
    # Every module of the package (its __main__ would run the CLI), found rather than listed.
    result = run_python(
        "import importlib, pkgutil, sys, fer_core;"
        "names = [m.name for m in pkgutil.iter_modules(fer_core.__path__) if m.name != '__main__'];"
        "[importlib.import_module('fer_core.' + name) for name in names];"
        "bad = [m for m in ('streamlit', 'plotly', 'tensorflow', 'keras') if m in sys.modules];"
        "print(len(names), bad); sys.exit(1 if bad or len(names) < 15 else 0)"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_training_page_shows_runs_without_the_trainer_or_tensorflow() -> None:
    # The page reads run folders through training.runs and checks data with training.splits; the trainer
    # and its callbacks, which bring Keras, stay out of the app server.
    result = run_python(
        "import importlib, pkgutil, sys, app.views.training_page as page;"
        "[importlib.import_module('app.views.training_page.' + m.name) for m in pkgutil.iter_modules(page.__path__)];"
        "bad = [m for m in ('training.trainer', 'training.callbacks', 'training.finish', 'tensorflow', 'keras')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_the_import_order_module_prevents_the_tensorflow_webrtc_segfault() -> None:
    # The order app/main.py enforces: WebRTC first, then TensorFlow, then WebRTC again (a page).
    result = run_python("import app.import_order, tensorflow, aiortc, pylibsrtp, streamlit_webrtc; print('alive')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alive" in result.stdout


def test_the_crash_the_guard_exists_for_is_real() -> None:
    # If this starts passing, the guard may be dropped; until then it documents why it is there.
    result = run_python("import tensorflow, streamlit_webrtc")
    assert result.returncode != 0


def test_app_entry_point_imports_the_guard_before_anything_else() -> None:
    source = (PROJECT_ROOT / "app" / "main.py").read_text()
    guard = source.index("import app.import_order")
    assert all(source.index(name) > guard for name in ("import streamlit as st", "st.navigation"))


@pytest.mark.slow
@pytest.mark.fer2013
def test_the_app_server_never_loads_tensorflow_or_keras(fer2013_dir) -> None:
    """Every page, a classified photo, an analysed clip and Live frames, in one process as in the server:
    models are served by LiteRT, so neither TensorFlow nor Keras may be imported (with Keras imported,
    Streamlit clears its session after every script and fragment run, which starved the Live page)."""
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "server_pages_probe.py"), str(fer2013_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"loaded": []}


def imported_modules(source_file: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, nested ones and ``importlib.import_module("...")`` too."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source_file.read_text(encoding="utf-8"), str(source_file))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_fer_core_never_imports_the_trainer_or_the_app() -> None:
    # The layers point down: app and training use fer_core, never the reverse (not even lazily in a function).
    sources = sorted((PROJECT_ROOT / "fer_core").rglob("*.py"))
    upward = [
        f"{source.relative_to(PROJECT_ROOT)}:{line} imports {module}"
        for source in sources
        for line, module in imported_modules(source)
        if module.split(".")[0] in ("training", "app")
    ]
    assert len(sources) >= 15
    assert upward == []


def test_the_upward_import_check_sees_nested_and_dynamic_imports(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "import os\n"
        "def load():\n"
        "    from training.runs import Run\n"
        "    import importlib\n"
        "    return importlib.import_module('app.state')\n"
    )
    assert [module for _, module in imported_modules(source)] == ["os", "training.runs", "importlib", "app.state"]
