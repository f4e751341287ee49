"""jaxgen's layers only look down: the import-linter contract in setup.cfg holds, every module is in
one of its layers, and jaxgen never imports the repository's `experiments` or `benchmarks`."""
import ast
import configparser
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxgen"


def _lint_imports() -> str:
    """The `lint-imports` of this environment (installed with the test extra)."""
    script = pathlib.Path(sys.executable).with_name("lint-imports")
    assert script.exists(), "import-linter is missing: pip install -e '.[test]'"
    return str(script)


def test_the_layers_contract_is_kept():
    done = subprocess.run([_lint_imports(), "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"the import contract in setup.cfg is broken:\n{done.stdout}\n{done.stderr}"
    assert "1 kept, 0 broken" in done.stdout, done.stdout


def _modules() -> list[str]:
    """Every module of jaxgen, by its dotted name (package __init__ files by the package's)."""
    names = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def test_every_module_sits_in_a_layer():
    """A new package or train/ module must be given its place in the contract, not pass unchecked."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    layers = [name.strip() for line in setup["importlinter:contract:layers"]["layers"].split("\n")
              for name in line.replace("|", ":").split(":") if name.strip()]
    unplaced = [m for m in _modules()
                if m not in ("jaxgen", "jaxgen.train") and not any(m == n or m.startswith(n + ".") for n in layers)]
    assert not unplaced, f"modules in no layer of setup.cfg's contract: {unplaced}"


def test_jaxgen_never_imports_experiments_or_benchmarks():
    """They are the repository's scripts, not part of the package: an installed jaxgen has neither."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in ("experiments", "benchmarks")]
    assert not found, found
