"""The package as pip installs it: packaged experiment files, console scripts, and the commands
working from any directory (not only the checkout's root)."""

import ast
import fnmatch
import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_experiment_file_is_package_data():
  patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["electra_jax"]
  package = ROOT / "electra_jax"
  gin_files = [str(p.relative_to(package)) for p in (package / "experiments").rglob("*.gin")]
  assert len(gin_files) >= 15
  missed = [f for f in gin_files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
  assert not missed, f"gin files a wheel would not ship: {missed}"


@pytest.mark.parametrize("script", sorted(PYPROJECT["project"]["scripts"]))
def test_console_scripts_point_at_commands(script, capsys):
  module, _, function = PYPROJECT["project"]["scripts"][script].partition(":")
  main = getattr(importlib.import_module(module), function)
  with pytest.raises(SystemExit) as exit_info:
    main(["--help"])
  assert exit_info.value.code == 0
  assert "usage:" in capsys.readouterr().out


def test_experiments_resolve_from_another_directory(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-m", "electra_jax.train", "--help"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  for name in ("tiny", "small", "base", "large", "ablations/mlm"):
    assert name in out.stdout
  probe = ("from electra_jax.pretrain.config import resolve_config; "
           "print(resolve_config('ablations/electra_15').objective.kind)")
  out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.split()[-1] == "electra_15", out.stderr


# The package layout of DESIGN.md §2: which subpackage may import which. `runtime` is shared by
# pre-training and fine-tuning and imports none of them; `io` reads and writes checkpoints
# knowing only the model; `pretrain` and `finetune` do not import each other.
ALLOWED_IMPORTS = {
    "model": {"runtime"},
    "runtime": set(),
    "io": {"model"},
    "pretrain": {"model", "runtime", "io"},
    "finetune": {"model", "runtime", "io"},
}


def _package_imports(package: str) -> dict:
  """{module path: electra_jax subpackages it imports (at any depth of the file)}."""
  out = {}
  for path in sorted((ROOT / "electra_jax" / package).rglob("*.py")):
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
               [a.name for a in node.names] if isinstance(node, ast.Import) else [])
      if isinstance(node, ast.ImportFrom) and node.module == "electra_jax":
        names = [f"electra_jax.{a.name}" for a in node.names]
      for name in names:
        parts = name.split(".")
        if parts[0] == "electra_jax" and len(parts) > 1 and parts[1] != package:
          found.add(parts[1])
    out[str(path.relative_to(ROOT))] = found
  return out


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_imports_point_one_way(package):
  bad = {path: sorted(found - ALLOWED_IMPORTS[package])
         for path, found in _package_imports(package).items() if found - ALLOWED_IMPORTS[package]}
  assert not bad, f"electra_jax.{package} may import only {sorted(ALLOWED_IMPORTS[package])}: {bad}"


def test_importing_io_loads_no_training_code():
  probe = ("import sys, electra_jax.io; "
           "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('electra_jax.')}))")
  out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr
  assert out.stdout.split("\n")[-2] == "['io', 'model', 'runtime']", out.stdout
