"""The package's layout: dependencies run one way (no import cycle among mtp's modules), and what the
Snakefile and its rules import at parse time never imports torch."""
import ast
import os
import subprocess

from conftest import BIN, ROOT

PACKAGE = ROOT / "mtp"


def modules():
    """{dotted module name: path} of every module under mtp/ (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _known(name, mods):
    """The module that importing `name` names: itself, else its longest known prefix (None outside mtp)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(name, path, mods):
    """The mtp modules that module `name` imports anywhere in it (top level, functions, conditionals).
    `from p import x` counts as importing p.x where p.x is a module, else as importing p (its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {_known(a.name, mods) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else _known(base, mods))
    return {m for m in out if m and m != name}


def find_cycle(graph):
    """A list [a, b, ..., a] of modules that import each other in a circle, or None."""
    state, stack = {}, []  # state: 1 = on the DFS stack, 2 = done

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles():
    """No module of mtp imports, directly or through others, a module that imports it back (imports inside
    functions count: they only hide a cycle). mtp.cli loads the stages by name (importlib), not by import."""
    mods = modules()
    graph = {name: imports(name, path, mods) for name, path in mods.items()}
    assert "mtp.config" in graph and "mtp.tasks" in graph["mtp.data"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_dry_run_without_torch(workdir, tmp_path_factory):
    """`snakemake -n` of the default study with a torch that cannot be imported: config validation, sweep
    expansion and every input function work without it (parsing the DAG must not load torch)."""
    blocked = tmp_path_factory.mktemp("no_torch")
    (blocked / "torch").mkdir()
    (blocked / "torch" / "__init__.py").write_text(
        'raise ImportError("torch imported while Snakemake parses the workflow (tests/test_layout.py)")\n')
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=workdir, capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "train_model" in out.stdout + out.stderr


def _reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_dependencies_run_one_way():
    """Data never imports evaluation (the synthetic generators are mtp.tasks); config validation never reaches
    the model (torch); the decoding engine never reaches its timing."""
    mods = modules()
    graph = {name: imports(name, path, mods) for name, path in mods.items()}
    assert not {m for m in _reach(graph, "mtp.data") if m.startswith("mtp.evals")}
    assert not {m for m in _reach(graph, "mtp.tasks") if m.startswith("mtp.evals")}
    assert "mtp.nn.model" not in _reach(graph, "mtp.config")
    assert not _reach(graph, "mtp.decoding.engine") & {"mtp.measure", "mtp.decoding.timing", "mtp.io"}
    # head types' behaviour is reached through the model (model.behaviour), never imported by what uses it
    users = {"mtp.nn.model", "mtp.decoding.engine", "mtp.decoding.kvcache", "mtp.training.step", "mtp.training.loop", "mtp.formats.export"}
    assert not {m for u in users for m in _reach(graph, u) if m.startswith("mtp.nn.heads")}


CORE = ("mtp.nn", "mtp.decoding.engine", "mtp.decoding.kvcache", "mtp.decoding.sampling")
STAGES = ("mtp.stages", "mtp.cli")  # the top layer: only the CLI and the stages reach a stage
# folder -> the folders it never reaches (directly or through others): the layers of docs/ARCHITECTURE.md
NEVER = {
    "core": ("mtp.training", "mtp.formats", "mtp.serving", "mtp.evals", "mtp.report", "mtp.tracking", "mtp.io",
             "mtp.decoding.timing", "mtp.config", *STAGES),
    "mtp.formats": ("mtp.serving", "mtp.evals", "mtp.report", "mtp.decoding", "mtp.training.loop", *STAGES),
    "mtp.serving": ("mtp.report", "mtp.evals", "mtp.training", *STAGES),
    "mtp.serving.plugin": ("mtp.tracking",),
    "mtp.training": ("mtp.serving", "mtp.evals", "mtp.report", "mtp.decoding.timing", *STAGES),
    "mtp.decoding": ("mtp.serving", "mtp.report", "mtp.training", *STAGES),  # timing reads code prompts (evals)
    "mtp.evals": ("mtp.serving", "mtp.report", "mtp.training", "mtp.tracking", *STAGES),
    "mtp.report": ("mtp.training", "mtp.decoding", "mtp.serving.timing", "mtp.serving.plugin", "mtp.nn", *STAGES),
    "mtp.tasks": ("mtp.evals", "mtp.nn", *STAGES),
    "mtp.result_types": ("mtp.nn", "mtp.report", *STAGES),
}


def _in(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_folders_are_layers():
    """Each folder reaches only the layers below it (NEVER): the core (model, heads, the decoding engine) does no
    I/O and knows no stage, formats know no serving, the report reads results without torch models."""
    mods = modules()
    graph = {name: imports(name, path, mods) for name, path in mods.items()}
    bad = []
    for folder, never in NEVER.items():
        starts = [m for m in mods if _in(m, CORE if folder == "core" else (folder,))]
        assert starts, folder
        bad += [f"{m} -> {r}" for m in starts for r in sorted(_reach(graph, m)) if _in(r, never)]
    assert not bad, "imports across the layers:\n" + "\n".join(bad)


def test_no_head_type_special_case_outside_its_module():
    """No module outside mtp/nn/heads/ and the registry compares anything with a head type's name (`x == "medusa"`):
    what a head type does is its behaviour's (mtp.nn.heads.base.HeadBehaviour), so adding one touches no stage."""
    from mtp.head_types import HEAD_TYPES
    found = []
    for name, path in modules().items():
        if name.startswith("mtp.nn.heads") or name == "mtp.head_types":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                found += [f"{path.relative_to(ROOT)}:{node.lineno}" for c in consts if c in HEAD_TYPES]
    assert not found, "head type names compared outside mtp/nn/heads/: " + ", ".join(found)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60  # DESIGN.md's style: small modules, short functions


def test_modules_and_functions_stay_small():
    """Every module under mtp/ at most MAX_MODULE_LINES lines, every function at most MAX_FUNCTION_LINES."""
    too_long = []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {n} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)


def test_result_file_names_live_in_the_result_kinds_table():
    """No module but mtp/results.py spells a per-model result file's name in code (docstrings aside): the stages
    write, the rules declare and the report reads them through mtp.results."""
    from mtp.results import kinds
    names = {k.file for k in kinds().values()}
    found = []
    for name, path in modules().items():
        if name == "mtp.results":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(ROOT)}:{c.lineno}" for c in ast.walk(tree) if isinstance(c, ast.Constant)
                  and isinstance(c.value, str) and id(c) not in docs and any(f in c.value for f in names)]
    for path in [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        found += [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                  if not line.lstrip().startswith("#") and any(f in line for f in names)]
    assert not found, "result file names outside mtp/results.py: " + ", ".join(found)


def test_one_module_per_stage():
    """mtp/stages/ holds one module per `mtp <stage>` (each with add_arguments and run) and their shared harness,
    nothing else; every stage of the CLI lives there."""
    from mtp.cli import STAGES as CLI_STAGES
    modules_ = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__", "harness"}
    assert {m.rpartition(".")[2] for m, _ in CLI_STAGES.values()} == modules_
    assert all(m.startswith("mtp.stages.") for m, _ in CLI_STAGES.values())
    for name in modules_:
        text = (PACKAGE / "stages" / f"{name}.py").read_text()
        assert "\ndef add_arguments(p" in text and "\ndef run(args" in text, name
