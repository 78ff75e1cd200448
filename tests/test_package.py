"""The package as pip installs it: packaged experiment files, console scripts, and the commands
working from any directory (not only the checkout's root)."""

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
  probe = ("from electra_jax.train_config import resolve_config; "
           "print(resolve_config('ablations/electra_15').objective.kind)")
  out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.split()[-1] == "electra_15", out.stderr
