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


# The import rules of the README's Layout section: which part may import which. A part is a
# subpackage of electra_jax, data_pipelines, data_pipelines.tokenizers (a part of its own, see
# below), or "top" (electra_jax's own modules: the commands above both pipelines and the
# package's re-exports, which may import any part). `floor` is the ground floor that everything
# else may import; `runtime` is shared by pre-training and fine-tuning and imports neither;
# `pretrain` and `finetune` do not import each other. `io` reads and writes checkpoints knowing
# the model, the floor and the tokenizers only: a conversion carries the tokenizer saved with its
# source into the target's files (Tokenizer.save writes the Hugging Face tokenizer files, so
# the tokenizer classes are needed, not a file copy), and load_tokenizer, public as
# electra_jax.load_tokenizer, reads it from any checkpoint path load_pretrained reads. Handing
# the tokenizer in from the callers instead would make every caller of convert() carry it or
# lose it silently; so data_pipelines.tokenizers is kept a leaf above the floor, and io reaches
# no other data_pipelines module through it.
ALLOWED_IMPORTS = {
    "floor": set(),
    "data_pipelines.tokenizers": {"floor"},
    "data_pipelines": {"floor"},
    "model": {"floor"},
    "runtime": {"floor"},
    "io": {"floor", "model", "data_pipelines.tokenizers"},
    "pretrain": {"floor", "model", "runtime", "io", "data_pipelines"},
    "finetune": {"floor", "model", "runtime", "io", "data_pipelines"},
}
SUBPACKAGES = {p.parent.name for p in (ROOT / "electra_jax").glob("*/__init__.py")}


def _part(module: str) -> str:
  """The part a dotted module name belongs to (data_pipelines.tokenizers kept apart)."""
  parts = module.split(".")
  if parts[0] == "data_pipelines":
    return "data_pipelines.tokenizers" if parts[1:2] == ["tokenizers"] else "data_pipelines"
  return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "top"


def _imported_modules(path: Path) -> set:
  """Every electra_jax / data_pipelines module a file imports, at any depth of the file
  (`from PACKAGE import name` counts as PACKAGE.name)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, f"{path}: relative import"
      if node.module in ("electra_jax", "data_pipelines"):
        found.update(f"{node.module}.{a.name}" for a in node.names)
      else:
        found.add(node.module)
  return {m for m in found if m.split(".")[0] in ("electra_jax", "data_pipelines")}


def _import_graph() -> dict:
  """{file: (its part, the parts it imports)} for every file of the checked parts."""
  graph = {}
  files = [*(ROOT / "data_pipelines").rglob("*.py"), *(ROOT / "electra_jax").glob("*/**/*.py")]
  for path in sorted(files):
    relative = path.relative_to(ROOT)
    part = _part(".".join(relative.with_suffix("").parts))
    imported = {_part(m) for m in _imported_modules(path)}
    graph[str(relative)] = (part, {t for t in imported if t.split(".")[0] != part})
  return graph


def test_imports_point_one_way():
  graph = _import_graph()
  assert {part for part, _ in graph.values()} == set(ALLOWED_IMPORTS)
  bad = {}
  for path, (part, imported) in graph.items():
    allowed = ALLOWED_IMPORTS[part]
    wrong = {t for t in imported if t not in allowed and t.split(".")[0] not in allowed}
    if wrong:
      bad[path] = sorted(wrong)
  assert not bad, f"imports against the rules {ALLOWED_IMPORTS}: {bad}"


def test_the_import_check_sees_an_arrow_against_the_rules(tmp_path):
  wrong = tmp_path / "layers.py"
  wrong.write_text("def f():\n  from electra_jax.runtime import mesh\n"
                   "from electra_jax import pretrain\nimport data_pipelines.glue\n")
  imported = {_part(m) for m in _imported_modules(wrong)}
  assert imported == {"runtime", "pretrain", "data_pipelines"}
  assert not imported <= ALLOWED_IMPORTS["model"]
  # the tokenizers, which io imports, import the floor only: no other data_pipelines module
  assert _part("data_pipelines.glue") not in ALLOWED_IMPORTS["data_pipelines.tokenizers"]
  assert _import_graph()["data_pipelines/tokenizers.py"][0] == "data_pipelines.tokenizers"


def test_old_import_paths_work_with_a_deprecation_warning():
  probe = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
           "from electra_jax.floor import fs, sharding, tf_runtime\n"
           "from electra_jax.runtime import mesh\n"
           "for old in ('from data_pipelines import fs as old', "
           "'import data_pipelines.tf_runtime as old', 'old = mesh.logical_constraint'):\n"
           "  try:\n    exec(old)\n  except DeprecationWarning as w:\n    print(w)\n"
           "warnings.simplefilter('ignore')\n"
           "from data_pipelines import fs as old_fs\nimport data_pipelines.tf_runtime as old_tf\n"
           "print(old_fs is fs, old_tf is tf_runtime, "
           "mesh.logical_constraint is sharding.logical_constraint)\n")
  out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[:3] == [
      "data_pipelines.fs moved to electra_jax.floor.fs; the old name goes in the next release",
      "data_pipelines.tf_runtime moved to electra_jax.floor.tf_runtime; the old name goes in the "
      "next release",
      "electra_jax.runtime.mesh.logical_constraint moved to "
      "electra_jax.floor.sharding.logical_constraint; the old name goes in the next release"]
  assert lines[3] == "True True True"


# Inference (electra-predict, load_classifier) runs a fine-tuned model without the training loops:
# no module it imports, at any depth, is one of these.
INFERENCE = ("electra_jax.finetune.predict", "electra_jax.finetune.classifier")
TRAINING_LOOPS = {"electra_jax.finetune.train", "electra_jax.pretrain.train"}


def _module_file(module: str):
  """The file of a dotted electra_jax / data_pipelines module name; None if it is no module."""
  base = ROOT.joinpath(*module.split("."))
  for path in (base.with_suffix(".py"), base / "__init__.py"):
    if path.is_file():
      return path
  return None


def _reachable(module: str) -> set:
  """Every module `module` imports, directly or through others (`from PACKAGE import name`
  counts PACKAGE.name where that is a module)."""
  seen, todo = set(), [module]
  while todo:
    path = _module_file(todo.pop())
    for node in ast.walk(ast.parse(path.read_text())):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      for name in names:
        if name not in seen and name.split(".")[0] in ("electra_jax", "data_pipelines") \
            and _module_file(name) is not None:
          seen.add(name)
          todo.append(name)
  return seen


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_imports_no_training_loop(module):
  loops = _reachable(module) & TRAINING_LOOPS
  assert not loops, f"{module} imports the training loop {sorted(loops)}"


def test_the_reachability_check_sees_a_training_loop():
  assert "electra_jax.finetune.train" in _reachable("electra_jax.finetune.sweep")
  assert "electra_jax.finetune.runner" in _reachable("electra_jax.finetune.classifier")


def test_importing_io_loads_no_training_code():
  probe = ("import sys, electra_jax.io.load, electra_jax.io.convert; "
           "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('electra_jax.')}))")
  out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr
  assert out.stdout.split("\n")[-2] == "['floor', 'io', 'model']", out.stdout


def test_load_finetuned_old_path_works_with_a_deprecation_warning():
  from electra_jax.finetune import runner, train
  with pytest.warns(DeprecationWarning, match="electra_jax.finetune.train.load_finetuned moved "
                                              "to electra_jax.finetune.runner.load_finetuned"):
    assert train.load_finetuned is runner.load_finetuned
