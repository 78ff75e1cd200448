"""The package as pip installs it: packaged experiment files, console scripts, the commands
working from any directory (not only the checkout's root), and requirements.txt's pins inside
pyproject's ranges."""

import ast
import fnmatch
import importlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _packaged_as(gin_file: Path) -> tuple[str, str]:
  """(package, file name) under which the wheel ships a file of the top-level experiments/."""
  relative = gin_file.relative_to(ROOT / "experiments")
  return ".".join(("electra_jax", "experiments", *relative.parent.parts)), relative.name


def test_every_experiment_file_is_package_data():
  assert SETUPTOOLS["package-dir"]["electra_jax.experiments"] == "experiments"
  gin_files = sorted((ROOT / "experiments").rglob("*.gin"))
  assert len(gin_files) >= 15
  missed = []
  for path in gin_files:
    package, name = _packaged_as(path)
    patterns = SETUPTOOLS["package-data"].get(package, [])
    if package not in SETUPTOOLS["packages"] or not any(fnmatch.fnmatch(name, p) for p in patterns):
      missed.append(str(path.relative_to(ROOT)))
  assert not missed, f"gin files a wheel would not ship: {missed}"


def test_every_python_package_is_listed():
  found = {".".join(p.parent.relative_to(ROOT).parts)
           for top in ("electra_jax", "data_pipelines") for p in (ROOT / top).rglob("__init__.py")}
  missing = found - set(SETUPTOOLS["packages"])
  assert not missing, f"packages pyproject.toml does not list (a wheel would leave out): {missing}"


def test_requirements_pin_every_dependency_inside_its_range():
  project = PYPROJECT["project"]
  ranges = [Requirement(r) for r in project["dependencies"]]
  ranges += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
  pins = {}
  for line in (ROOT / "requirements.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
      pin = Requirement(line)
      (spec,) = pin.specifier
      assert spec.operator == "==", f"requirements.txt pins exact versions: {line}"
      pins[canonicalize_name(pin.name)] = (pin, spec.version)
  for wanted in ranges:
    name = canonicalize_name(wanted.name)
    assert name in pins, f"{wanted.name} (pyproject.toml) is not pinned in requirements.txt"
    pin, pinned = pins[name]
    assert wanted.specifier.contains(pinned, prereleases=True), \
        f"requirements.txt pins {wanted.name}=={pinned}, outside pyproject's {wanted.specifier}"
    assert pin.extras == wanted.extras, f"{wanted.name}: extras {pin.extras} vs {wanted.extras}"
  declared = {canonicalize_name(r.name) for r in ranges}
  assert set(pins) <= declared, f"pins of no pyproject dependency: {set(pins) - declared}"


def test_wheel_ships_the_experiments(tmp_path):
  pytest.importorskip("setuptools", minversion="69")
  source = tmp_path / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, source / name)
  for name in ("electra_jax", "data_pipelines", "experiments"):
    shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
  out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", str(source), "-w", str(tmp_path / "dist")],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  (wheel,) = (tmp_path / "dist").glob("*.whl")
  shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".gin")}
  expected = {"electra_jax/experiments/" + str(p.relative_to(ROOT / "experiments"))
              for p in (ROOT / "experiments").rglob("*.gin")}
  assert shipped == expected


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
