"""Learning curves of electra_jax and the PyTorch reference side by side: the same recipe, the same
initial weights, the same training batches and the same eval batches.

    python -m tests.reference.curves --data_dir /work/data/shared128 --steps 600 \
        --eval_every 100 --out /work/runs/curves

electra_jax trains through `electra_jax.pretrain.train.train_and_evaluate` (its workdir is
OUT/jax); the reference (tests/reference/torch_electra.py) starts from the parameters electra_jax's
`create_train_state` gives the same seed (what train_and_evaluate starts from) and runs its own
free-running loop over the same `PretrainingData` batches. Masks, samples and dropout are drawn
independently in each framework, so the curves agree statistically, not bit for bit. Both
evaluate after every --eval_every steps and the last, with dropout off, averaging each metric
over eval batches 0..--eval_batches-1 of the eval split (as electra_jax's `_evaluate`).

Writes OUT/curves.json ({"args", "jax": [records], "reference": [records]}, a record being
{"step", metric: value}), OUT/reference_eval.json (the reference's records as they come) and
OUT/curves.png, and prints a markdown table of eval disc AUC, generator accuracy and MLM accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

TABLE_METRICS = (("disc_auc", "disc AUC"), ("gen_accuracy", "gen acc"),
                 ("mlm_accuracy", "mlm acc"))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m tests.reference.curves",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", required=True, help="pre-training shards (train and eval split)")
  p.add_argument("--out", required=True, help="output directory (OUT/jax must not exist)")
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--eval_every", type=int, default=100)
  p.add_argument("--eval_batches", type=int, default=10)
  p.add_argument("--kind", choices=("electra", "mlm", "uniform"), default="electra",
                 help="ELECTRA, the BERT baseline, or ELECTRA with a uniform generator")
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--heads", type=int, default=2)
  p.add_argument("--ffn", type=int, default=512)
  p.add_argument("--embedding", type=int, default=128)
  p.add_argument("--generator_fraction", type=float, default=0.25,
                 help="generator hidden size / discriminator hidden size (small.gin: 0.25)")
  p.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout")
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--warmup_fraction", type=float, default=0.1)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--bias_correction", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--seed", type=int, default=0, help="data order, initial weights, draws")
  return p.parse_args(argv)


def gin_bindings(args, data_dir: str, seq_len: int, vocab_size: int) -> list[str]:
  """The recipe as electra_jax gin bindings (every field that matters set explicitly)."""
  kind = "electra" if args.kind == "uniform" else args.kind
  return [
      f"ModelConfig.vocab_size = {vocab_size}",
      f"ModelConfig.embedding_size = {args.embedding}",
      f"ModelConfig.hidden_size = {args.hidden}",
      f"ModelConfig.num_hidden_layers = {args.layers}",
      f"ModelConfig.num_attention_heads = {args.heads}",
      f"ModelConfig.intermediate_size = {args.ffn}",
      f"ModelConfig.hidden_dropout_prob = {args.dropout}",
      f"ModelConfig.attention_probs_dropout_prob = {args.dropout}",
      f"TrainConfig.generator_hidden_fraction = {args.generator_fraction}",
      "TrainConfig.generator_layer_fraction = 1.0",
      'TrainConfig.embedding_sharing = "tied"',
      f"TrainConfig.num_train_steps = {args.steps}",
      f'ObjectiveConfig.kind = "{kind}"',
      f"ObjectiveConfig.uniform_generator = {args.kind == 'uniform'}",
      f"OptimizerConfig.learning_rate = {args.lr}",
      f"OptimizerConfig.warmup_steps = {round(args.warmup_fraction * args.steps)}",
      f"OptimizerConfig.total_steps = {args.steps}",
      f"OptimizerConfig.bias_correction = {args.bias_correction}",
      f'DataConfig.data_dir = "{data_dir}"',
      f"DataConfig.seq_len = {seq_len}",
      f"DataConfig.global_batch_size = {args.batch}",
      f"DataConfig.seed = {args.seed}",
      f"DataConfig.eval_every = {args.eval_every}",
      f"DataConfig.eval_batches = {args.eval_batches}",
      "CheckpointConfig.save_every = 0",
      f"LogConfig.log_every = {args.eval_every}",
      "LogConfig.tensorboard = False",
      "LogConfig.progress_bar = False",
  ]


def initial_params(config):
  """The parameters train_and_evaluate starts a fresh run of `config` from (numpy tree)."""
  import jax

  from electra_jax.pretrain.objective import build_pretraining_model, init_fn
  from electra_jax.runtime.optim import make_optimizer
  from electra_jax.runtime.mesh import make_mesh
  from electra_jax.runtime.state import create_train_state

  model = build_pretraining_model(config.model, config.generator, config.embedding_sharing,
                                  config.objective)
  state, _ = create_train_state(init_fn(model, config.data.seq_len), make_optimizer(config.optimizer),
                                make_mesh(config.mesh), seed=config.data.seed)
  return jax.device_get(state.params)


def read_jax_evals(workdir: Path) -> list[dict]:
  """OUT/jax/eval_metrics.jsonl -> [{"step", metric: value}] without the "eval_" prefix."""
  records = []
  for line in (workdir / "eval_metrics.jsonl").read_text().splitlines():
    raw = json.loads(line)
    records.append({k[len("eval_"):] if k.startswith("eval_") else k: v for k, v in raw.items()})
  return records


def run_reference(config, params, args, out: Path) -> list[dict]:
  """The reference trained on `config`'s data from `params`; its eval records."""
  from data_pipelines.pretraining_reader import PretrainingData
  from electra_jax.pretrain.objective import SpecialIds
  from tests.reference import torch_electra as te

  data = config.data
  train_data, eval_data = (
      PretrainingData(data.data_dir, global_batch_size=data.global_batch_size, seed=data.seed,
                      split=split, seq_len=data.seq_len, process_index=0, process_count=1)
      for split in ("train", data.eval_split))
  tok = train_data.manifest["tokenizer"]
  special = SpecialIds(pad=tok["pad_id"], cls=tok["cls_id"], sep=tok["sep_id"],
                       mask=tok["mask_id"], vocab_size=tok["vocab_size"])
  ref = te.from_jax_params(params, config.model, config.generator, config.objective)
  optimizer = te.OfficialAdamW(ref.hf_parameters(), config.optimizer)
  return te.train(ref, optimizer, train_data, eval_data, config.objective, special,
                  steps=config.train_steps, eval_every=data.eval_every,
                  eval_batches=data.eval_batches, seed=args.seed,
                  out_path=out / "reference_eval.json")


def markdown_table(jax_records: list[dict], ref_records: list[dict]) -> str:
  """| step | disc AUC jax | disc AUC torch | ... | for the steps both frameworks evaluated."""
  by_step = {r["step"]: r for r in ref_records}
  head = ["step"] + [f"{label} {side}" for _, label in TABLE_METRICS for side in ("jax", "torch")]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for j in jax_records:
    t = by_step.get(j["step"])
    if t is None:
      continue
    cells = [str(j["step"])] + [f"{r.get(name, float('nan')):.4f}" for name, _ in TABLE_METRICS
                                for r in (j, t)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(jax_records: list[dict], ref_records: list[dict], title: str, path: Path) -> None:
  """One panel per TABLE_METRICS metric: eval value against step, one line per framework."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(TABLE_METRICS), figsize=(5 * len(TABLE_METRICS), 4))
  for ax, (name, label) in zip(axes, TABLE_METRICS):
    for records, side, style in ((jax_records, "electra_jax", "o-"),
                                 (ref_records, "torch reference", "s--")):
      ax.plot([r["step"] for r in records], [r.get(name, float("nan")) for r in records], style,
              label=side)
    ax.set_xlabel("step")
    ax.set_title(label)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  from data_pipelines import manifest as manifest_lib
  from electra_jax.runtime import mesh as sharding
  from electra_jax.pretrain.train import train_and_evaluate
  from electra_jax.pretrain.config import resolve_config

  sharding.set_cpu_xla_flags()
  out = Path(args.out)
  workdir = out / "jax"
  if workdir.exists():
    print(f"error: {workdir} exists (electra_jax would resume it); choose a new --out",
          file=sys.stderr)
    return 2
  out.mkdir(parents=True, exist_ok=True)
  manifest = manifest_lib.read_manifest(args.data_dir)
  if manifest_lib.layout_of(manifest) != "unpacked":
    print(f"error: {args.data_dir} holds packed rows, which the PyTorch reference does not keep "
          "apart; build the shards with build_pretraining_data --layout unpacked", file=sys.stderr)
    return 2
  config = resolve_config(None, [], gin_bindings(args, str(Path(args.data_dir).resolve()),
                                                 manifest["seq_len"],
                                                 manifest["tokenizer"]["vocab_size"]))
  params = initial_params(config)

  train_and_evaluate(config, workdir)
  jax_records = read_jax_evals(workdir)
  ref_records = run_reference(config, params, args, out)

  (out / "curves.json").write_text(json.dumps(
      {"args": vars(args), "jax": jax_records, "reference": ref_records}, indent=1) + "\n")
  title = (f"{args.kind}: {args.layers}x{args.hidden}, lr {args.lr}, batch {args.batch}, "
           f"bias_correction={args.bias_correction}, seed {args.seed}")
  plot(jax_records, ref_records, title, out / "curves.png")
  print(f"\n{title}\n\n{markdown_table(jax_records, ref_records)}\n\nwritten: "
        f"{out / 'curves.json'}, {out / 'curves.png'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
