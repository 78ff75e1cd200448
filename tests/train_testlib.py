"""Shared pieces of the pre-training tests: a tiny config and the default data it reads.

The default data (built-in corpus, 4000-piece SentencePiece vocabulary) is built once into a
fixed directory under the system temp dir and reused by later tests and test sessions.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_CACHE = Path(tempfile.gettempdir()) / "electra_jax_test_data"
VOCAB = 4000

# Deterministic metrics (everything but timings) of one training step.
DETERMINISTIC_KEYS = ("loss", "gen_loss", "disc_loss", "gen_accuracy", "disc_accuracy",
                      "disc_precision", "disc_recall", "disc_auc", "replaced_fraction",
                      "grad_norm", "learning_rate")


def tiny_bindings(steps: int, *, seq_len: int = 64, batch: int = 8, **extra) -> list[str]:
  """Gin bindings of the tiny preset (2 layers, hidden 32) on the default data, `steps` long.

  extra: more bindings as {"Selector__field": value} (double underscore = dot).
  """
  bindings = {
      "ModelConfig.size": "tiny",
      "ModelConfig.vocab_size": VOCAB,
      "OptimizerConfig.learning_rate": 2e-3,
      "OptimizerConfig.warmup_steps": 10,
      "OptimizerConfig.total_steps": steps,
      "DataConfig.cache_dir": str(DATA_CACHE),
      "DataConfig.seq_len": seq_len,
      "DataConfig.global_batch_size": batch,
      "DataConfig.eval_every": 0,
      "CheckpointConfig.save_every": 0,
      "CheckpointConfig.async_save": False,
      "LogConfig.log_every": 1,
      "LogConfig.tensorboard": False,
      "LogConfig.progress_bar": False,
      "LogConfig.curves": False,
  }
  bindings.update({k.replace("__", "."): v for k, v in extra.items()})
  return [f"{k} = {v!r}" for k, v in bindings.items()]


def tiny_config(steps: int, **kw):
  from electra_jax.pretrain.config import resolve_config

  return resolve_config(None, gin_bindings=tiny_bindings(steps, **kw))


def read_jsonl(path: Path) -> list[dict]:
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def train_subprocess(workdir: Path, bindings: list[str], env_extra: dict | None = None,
                     extra_args: tuple = (), **popen) -> subprocess.Popen:
  """`python -m electra_jax.train` on the tiny config in a child process (CPU only)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
             TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
  cmd = [sys.executable, "-m", "electra_jax.train", f"--workdir={workdir}", *extra_args]
  for b in bindings:
    cmd.append(f"--gin_bindings={b}")
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **popen)


def free_port() -> int:
  """A TCP port on localhost that is free now (for a jax.distributed coordinator)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def wandb_offline(monkeypatch, root: Path) -> None:
  """Points the directories Weights & Biases uses besides the run's own under `root` and
  forces offline mode (no network, no login); WANDB_DIR stays unset (runs write in WORKDIR)."""
  monkeypatch.delenv("WANDB_DIR", raising=False)
  for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
    monkeypatch.setenv(var, str(root / var.lower()))
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")


def _wandb_records(data: bytes, record_type) -> list:
  """The whole records of a .wandb file's bytes (format in `read_wandb_run`)."""
  assert data[:4] == b":W&B", data[:7]
  block, pos, pending, records = 32768, 7, b"", []
  while pos + 7 <= len(data):
    left = block - pos % block
    if left < 7:
      pos += left
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    if kind == 0:  # zero padding up to the end of the block
      pos += left
      continue
    pending += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):
      records.append(record_type.FromString(pending))
      pending = b""
  return records


def read_wandb_run(run_dir: Path) -> tuple[dict, list[dict]]:
  """(config, history) of the offline W&B run in `run_dir`, read from its run-ID.wandb file.

  wandb 0.2x-0.3x has no Python reader of that file any more; its format: a 7-byte header
  (b":W&B", a 2-byte magic, a version byte), then 32 KiB blocks of records, each a 7-byte
  header (CRC-32C, little-endian uint16 length, type 1 full / 2 first / 3 middle / 4 last) and
  its bytes, a record never starting in a block's last 6 bytes (zero padding); whole records are
  wandb_internal_pb2.Record protos. config: {key: value} (JSON-decoded); history: one
  {key: value} per logged step, without wandb's own "_"-keys but with "_step".
  """
  from wandb.proto import wandb_internal_pb2

  (path,) = Path(run_dir).glob("run-*.wandb")
  deadline = time.monotonic() + 60
  while True:  # wandb's service writes the file after `finish` returns: wait for its exit record
    records = _wandb_records(path.read_bytes(), wandb_internal_pb2.Record)
    if any(r.HasField("exit") for r in records) or time.monotonic() > deadline:
      break
    time.sleep(0.2)
  config, history = {}, []
  for record in records:
    updates = (record.run.config.update if record.HasField("run") else
               record.config.update if record.HasField("config") else [])
    config.update({u.key: json.loads(u.value_json) for u in updates})
    if record.HasField("history"):
      row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
      history.append({k: v for k, v in row.items() if k == "_step" or not k.startswith("_")})
  return config, history
