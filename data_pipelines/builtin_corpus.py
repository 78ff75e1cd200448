"""The built-in smoke-test corpus: docstrings of the Python standard library.

It needs no network and no file outside the installed Python, and is deterministic for a given
Python build. It is about 1.8 MB of English technical prose (CPython 3.11) - enough to check that
pre-training runs and its loss falls, far too small and too narrow to pre-train a useful model.

Every source file is one document; each paragraph (blank-line separated, lines re-joined with
spaces) of its module, class and function docstrings is one text unit.
"""

import ast
import os
import sysconfig

from data_pipelines import text_io

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


def stdlib_source_files():
  """Sorted absolute paths of the standard library's .py files, test suites excluded."""
  root = sysconfig.get_paths()["stdlib"]
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
    found.extend(os.path.join(dirpath, name) for name in filenames if name.endswith(".py"))
  return sorted(found)


def docstring_units(path, stats):
  """Yield the paragraphs of every docstring in one source file, then "" (document end).

  Files that are not valid Python for this interpreter are counted in `stats.skipped_files`.
  """
  with open(path, "rb") as f:
    source, replaced = text_io.decode_utf8(f.read())
  stats.files += 1
  stats.replaced_bytes += replaced
  try:
    tree = ast.parse(source)
  except (SyntaxError, ValueError):
    stats.skipped_files += 1
    return
  for node in ast.walk(tree):
    if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    doc = ast.get_docstring(node, clean=True)
    if not doc:
      continue
    for paragraph in doc.split("\n\n"):
      unit = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
      if unit:
        yield unit
  yield ""
