"""The direction of imports between the layers, read from the source (AST), not by importing.

    videoswin.core   pure standard library: facts about Video Swin
    videoswin.*      the Keras model (and video reading) on top of core
    converter        conversion, on top of videoswin
    videoswin_tools  CLIs, zoo, publishing, on top of converter and videoswin

Every `import` and `from ... import` counts, at any depth (inside functions too), for the
layer rules; the cycle check reads module-level imports only (those run at import time).
Dynamic imports (`importlib.import_module`) are not seen.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("videoswin", "converter", "videoswin_tools")
HEAVY = ("keras", "torch", "tensorflow", "jax", "mmengine", "mmcv", "h5py", "numpy")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files():
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[_module_name(path)] = path
    return files


FILES = _source_files()
MODULES = set(FILES)


def _lazy_names():
    """`videoswin.<Name>` -> the module that defines it (PEP 562 attributes), from the AST."""
    tree = ast.parse((ROOT / "videoswin" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY"
                                                for t in node.targets):
            return {f"videoswin.{k}": v for k, v in ast.literal_eval(node.value).items()}
    return {}


LAZY = _lazy_names()


class _Import:
    """One imported name: `target` the module (or module.attribute) it reaches."""

    def __init__(self, module, target, line, top_level):
        self.module, self.target, self.line, self.top_level = module, target, line, top_level

    def __repr__(self):
        return f"{self.module}:{self.line} imports {self.target}"


def _imports(module, path):
    """Every import of `module`, resolved to absolute targets, with whether it runs at
    import time (not inside a function)."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []

    def visit(node, top_level):
        for child in ast.iter_child_nodes(node):
            inner = top_level and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(_Import(module, alias.name, child.lineno, top_level))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - child.level + 1]
                    base = ".".join(base + ([child.module] if child.module else []))
                else:
                    base = child.module
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    if alias.name == "*":
                        name = base
                    found.append(_Import(module, LAZY.get(name, name), child.lineno,
                                         top_level))
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), True)
    return found


IMPORTS = {module: _imports(module, path) for module, path in FILES.items()}


def _reaches(target, prefix):
    return target == prefix or target.startswith(prefix + ".")


def _violations(modules, forbidden):
    return [f"{imp}" for module in modules for imp in IMPORTS[module]
            if any(_reaches(imp.target, f) for f in forbidden)]


def _in(package):
    return sorted(m for m in MODULES if _reaches(m, package))


def test_the_scan_sees_the_source():
    # Guards the checks below against scanning nothing.
    assert {"videoswin.core.archs", "videoswin.model.attention", "converter.mapping",
            "converter.upstream", "videoswin_tools.convert"} <= MODULES
    assert any(i.target == "keras" and i.top_level
               for i in IMPORTS["videoswin.model.attention"])
    # An import inside a function is seen, and known not to run at import time.
    assert any(i.target == "videoswin.model.keras_private" and not i.top_level
               for i in IMPORTS["converter.mapping"])
    assert LAZY["videoswin.VideoSwinB"] == "videoswin.model.variants"


def test_core_imports_only_the_standard_library_and_core():
    core = _in("videoswin.core")
    forbidden = ("videoswin.model", "videoswin.video", "converter", "videoswin_tools") + HEAVY
    bad = _violations(core, forbidden)
    assert not bad, ("videoswin.core must import no Keras, framework or higher layer "
                     "(not even inside a function):\n  " + "\n  ".join(bad))
    other = [f"{imp}" for module in core for imp in IMPORTS[module]
             if not _reaches(imp.target, "videoswin.core")
             and imp.target.split(".")[0] not in sys.stdlib_module_names]
    assert not other, "videoswin.core is pure standard library:\n  " + "\n  ".join(other)


def test_videoswin_imports_neither_the_converter_nor_the_tools_nor_torch():
    bad = _violations(_in("videoswin"),
                      ("converter", "videoswin_tools", "torch", "mmengine", "mmcv"))
    assert not bad, "videoswin must not depend on these:\n  " + "\n  ".join(bad)


def test_converter_does_not_import_the_tools():
    bad = _violations(_in("converter"), ("videoswin_tools",))
    assert not bad, "converter must not depend on videoswin_tools:\n  " + "\n  ".join(bad)


def _graph():
    """module -> modules of the three packages it imports at import time."""
    graph = {}
    for module, imports in IMPORTS.items():
        edges = set()
        for imp in imports:
            if not imp.top_level:
                continue
            # `from pkg import sub` reaches the submodule; `from mod import name` the module.
            target = imp.target
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.add(target)
        graph[module] = sorted(edges)
    return graph


def find_cycles(graph):
    """Each cycle closed by a back edge of a depth-first search, as [a, b, ..., a]."""
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": ["b", "c"], "b": ["c"], "c": []}) == []


def test_no_import_cycles():
    graph = _graph()
    assert graph["videoswin.model.stage"] == ["videoswin.model.block",
                                              "videoswin.model.embedding"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module-level imports):\n  " + "\n  ".join(
        " -> ".join(cycle) for cycle in cycles)


def test_importing_videoswin_and_core_loads_no_framework():
    code = ("import videoswin, videoswin.core.archs, videoswin.core.flops, "
            "videoswin.core.manifest, videoswin.core.presets, videoswin.core.labels, "
            "videoswin.video, sys; "
            "loaded = [m for m in ('keras', 'torch', 'tensorflow', 'jax', 'mmengine', 'h5py') "
            "if m in sys.modules]; "
            "assert not loaded, loaded")
    env = dict(os.environ, KERAS_BACKEND="torch")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_tensorflow_starts_quietly_after_import_videoswin():
    """TensorFlow's C++ INFO lines (CPU feature notes) stay off the user's screen; a level the
    user chose is kept."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "tensorflow"
    code = ("import os, videoswin, keras; keras.ops.ones((2,)); "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "1"
    assert proc.stderr.strip() == "", proc.stderr
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "0"


def test_only_the_upstream_loader_loads_files_as_modules():
    found = []
    for folder in PACKAGES + ("scripts",):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            if "spec_from_file_location" in text:
                found.append(str(path.relative_to(ROOT)))
    assert found == ["converter/upstream.py"], (
        "only converter/upstream.py (the mmaction2 oracle loader) may load a file as a "
        f"module; found spec_from_file_location in {found}")
