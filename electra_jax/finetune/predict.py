"""Score new text with a fine-tuned model.

    python -m electra_jax.finetune.predict --model=PATH --input=FILE --output=FILE \
        [--batch_size=32] [--max_seq_length=N]
    electra-predict ...                  (the same command, installed)

PATH: a fine-tuned model directory as electra_jax.finetune writes it, WORKDIR/seed_S/final (or
best): electra_jax.json with a "finetune" record + params.safetensors, the tokenizer from
WORKDIR/tokenizer. Or a fine-tuning WORKDIR: the seed with the best primary dev metric in its
results.json is used, and named on stderr.

Input (data_pipelines.tables, by suffix): TSV with a header row (no quoting, as GLUE's files),
CSV (quoted as spreadsheets and pandas write it), JSON Lines (.jsonl/.json) or Parquet; `-` reads
stdin (as TSV, or the format `--input_format` names). The text columns: for a model fine-tuned
on your own data the columns it was trained on (its record); for a GLUE task the names of the
GLUE files (sst2 and cola `sentence`; mnli, rte, wnli and stsb `sentence1` + `sentence2`; qqp
`question1` + `question2`; qnli `question` + `sentence`; mrpc `#1 String` + `#2 String`) or of
TFDS (mnli `premise` + `hypothesis`, mrpc `sentence1` + `sentence2`). Other columns (an id, a
gold label) are copied.

Output: the input's format by default (the suffix of FILE; `-` writes stdout as the input's
format, or `--output_format`). Each input row's columns, then `prediction` (the label name for
classification, the value for regression, the comma-joined names for multi-label) and, for
classification and multi-label, `probability_<label>` per class (softmax, multi-label sigmoid,
of the logits). In TSV output tabs and line breaks inside a field become spaces.

Classification, regression and multi-label models are scored here. Span (SQuAD) and tagging
(CoNLL) models are refused with the way to run them: `electra-convert` to Hugging Face, then
transformers' question-answering / token-classification pipelines.

PATH and both FILEs may be local paths or tf.io.gfile URLs (gs://bucket/...; electra_jax.floor.fs).

Rows are featurised as fine-tuning featurised its dev set (data_pipelines.glue.featurize at the
model's fine-tuning max sequence length) and scored by the fine-tuning Runner's jitted predict
step, `--batch_size` rows at a time (one compilation; the last batch is padded), with a progress
bar on stderr when the input spans several chunks of 16 batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Optional

import jax
import numpy as np
from tqdm.auto import tqdm

from data_pipelines import glue, tables
from electra_jax.finetune.kinds import KINDS
from electra_jax.finetune.tasks import Task, get_task, with_columns
from electra_jax.finetune.runner import Runner, load_finetuned
from electra_jax.floor import fs
from electra_jax.io.load import load_tokenizer
from electra_jax.io.native import NATIVE_CONFIG
from electra_jax.runtime import mesh as shd

FORMATS = sorted(set(tables.SUFFIXES.values()))
BATCHES_PER_CHUNK = 16  # featurised and scored together; the progress bar advances per chunk


# ---------------------------------------------------------------------------------------------
# Which model


def best_seed_model(workdir: str) -> tuple[str, str]:
  """(WORKDIR/seed_S/{select}, a note naming it) for the seed with the highest primary metric in
  WORKDIR/results.json (the first such seed on a tie)."""
  path = fs.join(workdir, "results.json")
  try:
    results = json.loads(fs.read_text(path))
    primary, select = results["primary_metric"], results["select"]
    seeds, values = results["seeds"], results["per_seed"][primary]
    best = max(range(len(seeds)), key=lambda i: (values[i], -i))
  except (ValueError, KeyError, TypeError, IndexError) as e:
    raise ValueError(f"{path}: not a fine-tuning results file ({type(e).__name__}: {e}); pass "
                     "a model directory WORKDIR/seed_S/final as --model") from None
  model_dir = fs.join(workdir, f"seed_{seeds[best]}", select)
  if not fs.isfile(fs.join(model_dir, NATIVE_CONFIG)):
    raise FileNotFoundError(f"{model_dir}: the best seed's model is missing (fine-tuned with "
                            "FinetuneConfig.save_checkpoint = False?)")
  scores = ", ".join(f"seed {s} {v:.2f}" for s, v in zip(seeds, values))
  return model_dir, f"using {model_dir}: the best {primary} on dev ({scores})"


def resolve_model_dir(path: str) -> tuple[str, Optional[str]]:
  """(the fine-tuned model directory `path` names, a note when it was chosen from a WORKDIR)."""
  if not fs.exists(path):
    raise FileNotFoundError(f"--model {path}: no such file or directory")
  p = (fs.dirname(path) or ".") if fs.isfile(path) else path
  if fs.isfile(fs.join(p, NATIVE_CONFIG)):
    return p, None
  if fs.isfile(fs.join(p, "results.json")):
    return best_seed_model(p)
  found = sorted(os.path.relpath(fs.dirname(m), p)
                 for m in fs.glob(fs.join(p, "seed_*", "*", NATIVE_CONFIG)))
  hint = f"; it holds fine-tuned models {found}: pass one of them" if found else ""
  raise FileNotFoundError(f"--model {path}: neither a fine-tuned model directory ({NATIVE_CONFIG} "
                          "+ params.safetensors, e.g. WORKDIR/seed_1/final) nor a fine-tuning "
                          f"WORKDIR with results.json{hint}")


def finetune_record(model_dir: str) -> tuple[Task, dict]:
  """(task, the "finetune" record of electra_jax.json) of a fine-tuned model directory;
  ValueError for an unreadable record or a kind predict does not score."""
  spec_path = fs.join(model_dir, NATIVE_CONFIG)
  try:
    spec = json.loads(fs.read_text(spec_path, encoding="utf-8"))
  except ValueError as e:
    raise ValueError(f"{spec_path}: invalid JSON ({e})") from None
  record = spec.get("finetune") if isinstance(spec, dict) else None
  if not isinstance(record, dict) or "task" not in record:
    raise ValueError(f"{spec_path} has no 'finetune' record with the task: {model_dir} is not a "
                     "model written by electra_jax.finetune (a pre-trained export?)")
  task = get_task(record["task"])
  if task.own_data:
    task = with_columns(task, *record["columns"])
  kind = KINDS[task.kind]
  if not kind.sequence_level:
    scored = [name for name, k in KINDS.items() if k.sequence_level]
    raise ValueError(f"{model_dir} is fine-tuned on {task.name}, a {task.kind} task: predict "
                     f"scores {', '.join(scored)} models. Export it with "
                     f"`electra-convert {model_dir} HF_DIR` and run transformers.pipeline"
                     f"(\"{kind.pipeline}\", model=\"HF_DIR\")")
  return task, record


# ---------------------------------------------------------------------------------------------
# Input and output files


def text_columns(task: Task) -> list[tuple[str, ...]]:
  """The accepted names of a task's text columns: own data, the columns it was trained on; a
  GLUE task, the native files', then TFDS's."""
  if task.own_data:
    return [tuple(c for c in task.columns[:2] if c)]
  fmt = glue.FORMATS[task.name]
  options = [tuple(c for c in (fmt.text_a, fmt.text_b) if c),
             tuple(c for c in glue.TFDS_TEXT_KEYS[task.name] if c)]
  return list(dict.fromkeys(options))


def read_examples(path: str, task: Task, labels: tuple, fmt: Optional[str] = None
                  ) -> tuple[list[str], list[dict], list[glue.TextExample]]:
  """(input columns, input rows, one TextExample per row) for `task` from a table file (`-`:
  stdin, as `fmt` or TSV): the text columns are the first of `text_columns(task)` the file has;
  ValueError naming the columns found and needed, an empty text, or an input column that the
  output would overwrite."""
  columns, rows = tables.read_table(path, fmt)
  options = text_columns(task)
  chosen = next((o for o in options if all(c in columns for c in o)), None)
  if chosen is None:
    needed = " or ".join(" + ".join(repr(c) for c in o) for o in options)
    raise ValueError(f"{path}: no {task.name} text column(s): found columns {columns}, "
                     f"{task.name} needs {needed}")
  taken = [c for c in KINDS[task.kind].output_columns(labels) if c in columns]
  if taken:
    raise ValueError(f"{path}: input columns {taken} would be overwritten by the predictions; "
                     "rename them")
  examples = []
  for i, (where, row) in enumerate(rows):
    texts = []
    for c in chosen:
      value = row.get(c)
      if not isinstance(value, str):
        raise ValueError(f"{where}: column {c!r} holds {value!r}, expected text")
      if not value.strip():
        raise ValueError(f"{where}: empty text in column {c!r}")
      texts.append(value)
    examples.append(glue.TextExample(str(i), texts[0], texts[1] if len(texts) > 1 else None,
                                     None))
  return columns, [row for _, row in rows], examples


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclasses.dataclass
class Predictor:
  """A fine-tuned classification / regression model ready to score text: its task, label names
  (empty for regression), tokenizer, fine-tuning max sequence length, and the fine-tuning Runner
  with the parameters laid out on its mesh."""

  task: Task
  labels: tuple
  tokenizer: object
  max_seq_length: int
  runner: Runner
  params: dict
  batch_size: int

  def outputs(self, examples: list, progress: bool = True) -> np.ndarray:
    """The predict step's outputs for `examples` (glue.TextExample): logits [N, C] float32 for
    classification, values [N] for regression; in chunks of BATCHES_PER_CHUNK batches."""
    chunk = self.batch_size * BATCHES_PER_CHUNK
    bar = tqdm(total=len(examples), unit="rows", desc="predict", file=sys.stderr,
               disable=not progress or len(examples) <= chunk)
    parts = []
    with bar:
      for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        arrays = glue.featurize(part, self.tokenizer, self.max_seq_length)
        parts.append(self.runner.predict(self.params, arrays, self.batch_size))
        bar.update(len(part))
    return np.concatenate(parts)


def load_predictor(model_dir: str, batch_size: int = 32,
                   max_seq_length: Optional[int] = None) -> Predictor:
  """The Predictor of a fine-tuned model directory (`resolve_model_dir` finds it in a WORKDIR).

  max_seq_length: default the one the model was fine-tuned with (its record; models written
  before it was recorded: the task's default, capped by the position embeddings).
  """
  task, _ = finetune_record(model_dir)
  model, params, record = load_finetuned(str(model_dir))
  tokenizer = load_tokenizer(str(model_dir))
  limit = model.config.max_position_embeddings
  length = max_seq_length or record.get("max_seq_length") or min(task.max_seq_length, limit)
  if length > limit:
    raise ValueError(f"--max_seq_length {length} exceeds the model's {limit} positions")
  mesh = shd.make_mesh(shd.MeshConfig())
  shd.check_batch(mesh, batch_size, "--batch_size")
  runner = Runner(model, KINDS[task.kind], mesh, None, length)  # the predict step alone
  return Predictor(task, tuple(record.get("labels") or ()), tokenizer, length, runner,
                   jax.device_put(params, runner.param_shardings), batch_size)


def _format(path: str, given: Optional[str], default: str) -> str:
  """`given`, else the table format of path's suffix, else `default` (stdin/stdout, .txt)."""
  if given is not None or path == tables.STDIO:
    return given or default
  try:
    return tables.format_of(path)
  except ValueError:
    return default


def predict_file(model: str, input_path: str, output_path: str, batch_size: int = 32,
                 max_seq_length: Optional[int] = None, log=print,
                 input_format: Optional[str] = None, output_format: Optional[str] = None) -> int:
  """Scores every row of `input_path` with the model at `model` (a model directory or a
  fine-tuning WORKDIR) and writes `output_path` (`-`: stdin / stdout; formats by suffix, or
  `input_format` / `output_format`; the output's default is the input's); returns the number of
  rows. The input is read and checked before the model loads. `log` gets the notes (which seed
  of a WORKDIR, timing)."""
  input_format = _format(input_path, input_format, "tsv")
  output_format = _format(output_path, output_format, input_format)
  model_dir, note = resolve_model_dir(model)
  if note:
    log(note)
  task, record = finetune_record(model_dir)
  labels = tuple(record.get("labels") or ())
  columns, rows, examples = read_examples(input_path, task, labels, input_format)
  t0 = time.time()
  predictor = load_predictor(model_dir, batch_size, max_seq_length)
  kind = KINDS[task.kind]
  fields = kind.table_fields(labels, predictor.outputs(examples))
  if output_path != tables.STDIO:
    fs.makedirs(fs.dirname(fs.abspath(output_path)))
  tables.write_table(output_path, columns + kind.output_columns(labels),
                     [{**row, **f} for row, f in zip(rows, fields)], output_format)
  log(f"predicted {len(rows)} rows of {input_path} with {model_dir} ({task.name}) in "
      f"{time.time() - t0:.1f}s -> {output_path}")
  return len(rows)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m electra_jax.finetune.predict", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True,
                 help="WORKDIR/seed_S/final of electra_jax.finetune, or the WORKDIR (best seed)")
  p.add_argument("--input", required=True,
                 help=".tsv (with a header), .csv, .jsonl or .parquet; - reads stdin")
  p.add_argument("--output", required=True, help="a table file as --input; - writes stdout")
  p.add_argument("--input_format", choices=FORMATS, help="default: the suffix (stdin: tsv)")
  p.add_argument("--output_format", choices=FORMATS, help="default: the suffix, else the input's")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--max_seq_length", type=int,
                 help="default: the length the model was fine-tuned with")
  args = p.parse_args(argv)
  shd.set_cpu_xla_flags()  # before JAX starts its backend; CPU-only flags
  if args.batch_size <= 0:
    p.error(f"--batch_size {args.batch_size} must be positive")
  try:
    predict_file(args.model, args.input, args.output, args.batch_size, args.max_seq_length,
                 log=lambda message: print(message, file=sys.stderr),
                 input_format=args.input_format, output_format=args.output_format)
  except (ValueError, OSError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
