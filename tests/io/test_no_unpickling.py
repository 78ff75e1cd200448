"""The package never unpickles: a scan of electra_jax/ and data_pipelines/ for loads that can run
code from a file (pickle, torch.load, joblib, np.load allowing pickles).

The scan parses the sources (ast), so the conversion hints in error messages (common.refuse_pickle
quotes `torch.load(...)`) do not count; pickle-like modules are refused at import too, so an
alias (`import pickle as p`) cannot hide a load.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("electra_jax", "data_pipelines")
# "package/file.py" -> why its loads are safe. Empty: nothing in the package needs one
# (pickle-based PyTorch checkpoints are refused by electra_jax.io.hf.refuse_pickle).
ALLOWED = {}

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
UNSAFE_CALLS = {f"{m}.{f}" for m in PICKLE_MODULES for f in ("load", "loads", "Unpickler")} | {
    "torch.load", "pd.read_pickle", "pandas.read_pickle"}


def _dotted(node) -> str:
  """'a.b.c' for a Name / Attribute chain, '' for anything else."""
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    base = _dotted(node.value)
    return f"{base}.{node.attr}" if base else ""
  return ""


def _is_false(node) -> bool:
  return isinstance(node, ast.Constant) and node.value is False


def unsafe_loads(source: str, where: str) -> list[str]:
  """'WHERE:LINE: what' for every import or call in `source` that could unpickle, by line."""
  found = []
  for node in ast.walk(ast.parse(source, where)):
    if isinstance(node, ast.Import):
      found += [(node.lineno, f"import {a.name}") for a in node.names
                if a.name.split(".")[0] in PICKLE_MODULES]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
      found.append((node.lineno, f"from {node.module} import ..."))
    elif isinstance(node, ast.Call):
      name = _dotted(node.func)
      allow = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
      if ".".join(name.split(".")[-2:]) in UNSAFE_CALLS:
        found.append((node.lineno, f"{name}(...)"))
      elif name in ("np.load", "numpy.load") and not _is_false(allow):
        found.append((node.lineno, f"{name}(...) without allow_pickle=False"))
      elif allow is not None and not _is_false(allow):
        found.append((node.lineno, f"{name}(..., allow_pickle={ast.unparse(allow)})"))
  return [f"{where}:{line}: {what}" for line, what in sorted(found)]


@pytest.mark.parametrize("source, what", [
    ("import pickle\npickle.load(f)\n", ["x.py:1: import pickle", "x.py:2: pickle.load(...)"]),
    ("import pickle as p\n", ["x.py:1: import pickle"]),
    ("from joblib import load\n", ["x.py:1: from joblib import ..."]),
    ("state = torch.load(path)\n", ["x.py:1: torch.load(...)"]),
    ("a = np.load(path)\n", ["x.py:1: np.load(...) without allow_pickle=False"]),
    ("a = numpy.load(path, allow_pickle=True)\n",
     ["x.py:1: numpy.load(...) without allow_pickle=False"]),
    ("a = reader(path, allow_pickle=True)\n", ["x.py:1: reader(..., allow_pickle=True)"]),
    ("a = np.load(path, allow_pickle=False)\nmsg = 'torch.load(path)'\n", []),
])
def test_scan_finds_unsafe_loads(source, what):
  assert unsafe_loads(source, "x.py") == what


def test_package_sources_never_unpickle():
  found = []
  for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      where = str(path.relative_to(ROOT))
      if where not in ALLOWED:
        found += unsafe_loads(path.read_text(encoding="utf-8"), where)
  assert not found, ("the package must not unpickle (safetensors / JSON only); found:\n"
                     + "\n".join(found))
