"""Where a CPU pre-training step spends its time, by kind of work (issue 23).

Runs the benchmark's train step (`electra_jax.benchmark.build_step`: ELECTRA objective, official
optimizer, a synthetic batch) a few times under `jax.profiler.trace` with XLA's CPU thunk
annotations on (`--xla_cpu_enable_xprof_traceme=true`), then sums the time of every thunk on the
host's threads by what its HLO does, read from the compiled module's text:

  matmul      a fusion or op with a dot / convolution in it (its epilogue included)
  random      threefry bits: a fusion with both shifts and xors, or an rng op
  sort        sorts and top-k (the masking's choice of positions)
  erf         the exact GELU's erf (no dot in the same fusion)
  reduce      a reduction (softmax and LayerNorm statistics, losses, the optimizer's norms)
  layout      only transposes / copies / reshapes / bitcasts: moving bytes, no arithmetic
  broadcast   only broadcasts (and layout ops): materialised broadcasts
  elementwise everything else (adds, multiplies, selects of dropout masks, Adam's update)

Each thunk's time is the wall time of the thread that ran it (a matmul thunk may use more cores
inside); thunks of one step can overlap on the threads, so the sum can exceed the step's wall
time, printed beside it. Compare breakdowns of two commits in one sitting on a quiet machine.

    python docs/step_breakdown.py --size small              # ELECTRA-Small, batch 32 x 128
    python docs/step_breakdown.py --size small --set num_hidden_layers=4 --set hidden_size=128 \
        --set num_attention_heads=2 --set intermediate_size=512 --set vocab_size=8000
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile

KINDS = ("matmul", "random", "sort", "erf", "reduce", "layout", "broadcast", "elementwise")
_LAYOUT = {"transpose", "copy", "reshape", "bitcast", "parameter", "tuple", "get-tuple-element",
           "slice", "concatenate", "pad", "dynamic-slice", "dynamic-update-slice", "constant",
           "copy-start", "copy-done"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OPCODE = re.compile(r"(?<![\w.\-%])([a-z][a-z0-9\-]*)\(")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')


def parse_hlo(text: str) -> tuple[dict, dict]:
  """({computation: [(opcode, [called computation, ...]), ...]},
  {instruction: (opcode, [called computation, ...])}) of an HLO module's text
  (`compiled.as_text()`)."""
  computations, instructions, current = {}, {}, None
  for line in text.splitlines():
    head = _COMPUTATION.match(line)
    if head and "=" not in line.split("(")[0]:
      current = head.group(1)
      computations[current] = []
      continue
    match = _INSTRUCTION.match(line)
    if not match or current is None:
      continue
    name, rest = match.groups()
    opcode = _OPCODE.search(rest)
    if opcode:
      target = _TARGET.search(rest)
      entry = (opcode.group(1) + (f":{target.group(1)}" if target else ""), _CALLS.findall(rest))
      computations[current].append(entry)
      instructions[name] = entry
  return computations, instructions


def opcodes_of(name: str, computations: dict, instructions: dict) -> set:
  """Every opcode instruction `name` runs: its own (unless it only calls: fusion, call) and
  those of the computations it calls, transitively (reducers included)."""
  opcode, todo = instructions[name]
  found, seen, todo = ({opcode} - {"fusion", "call"}), set(), list(todo)
  while todo:
    comp = todo.pop()
    if comp in seen or comp not in computations:
      continue
    seen.add(comp)
    for op, calls in computations[comp]:
      found.add(op)
      todo += calls
  return (found - {"fusion", "call"}) or {opcode}


def kind_of(opcodes: set) -> str:
  """The KINDS entry of a thunk that runs `opcodes` (module docstring)."""
  if opcodes & {"dot", "convolution"} or any(
      op.startswith("custom-call:") and ("matmul" in op.lower() or "dot" in op.lower())
      for op in opcodes):
    return "matmul"
  if "rng-bit-generator" in opcodes or "rng" in opcodes or (
      opcodes & {"shift-right-logical", "shift-left"} and "xor" in opcodes):
    return "random"
  if "sort" in opcodes or any(op.lower().startswith("custom-call:topk") for op in opcodes):
    return "sort"
  if "erf" in opcodes:
    return "erf"
  if opcodes & {"reduce", "reduce-window", "all-reduce"}:
    return "reduce"
  if opcodes <= _LAYOUT:
    return "layout"
  if opcodes <= _LAYOUT | {"broadcast"}:
    return "broadcast"
  return "elementwise"


def thunk_times(trace: dict) -> collections.Counter:
  """{event name: total microseconds} of the complete ("X") events of every thread of the trace's
  host process(es) (XLA CPU thunk annotations are named after their HLO instruction)."""
  total = collections.Counter()
  for e in trace["traceEvents"]:
    if e.get("ph") == "X":
      total[e["name"]] += float(e.get("dur", 0))
  return total


def breakdown(times: collections.Counter, computations: dict, instructions: dict,
              steps: int) -> dict:
  """{kind: ms per step} over the events that name an instruction of the module (events of
  other names, the runtime's own annotations, are left out)."""
  out = dict.fromkeys(KINDS, 0.0)
  for name, us in times.items():
    # A loop's or conditional's event spans the thunks of its body, which have their own.
    if name in instructions and instructions[name][0] not in ("while", "conditional"):
      out[kind_of(opcodes_of(name, computations, instructions))] += us / 1e3 / steps
  return out


def main(argv=None) -> None:
  from electra_jax import benchmark  # jax reads the XLA_FLAGS set below at its first computation

  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  benchmark.add_step_arguments(parser)
  parser.add_argument("--steps", type=int, default=3, help="traced steps")
  args = parser.parse_args(argv)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_cpu_enable_xprof_traceme=true").strip()
  import jax

  from electra_jax.runtime import mesh as shd

  shd.set_cpu_xla_flags()
  disc, gen, batch, special = benchmark.step_inputs(args)
  step, state, data, _ = benchmark.build_step(disc, gen, batch, args.sampler, special)
  computations, instructions = parse_hlo(step.lower(state, data).compile().as_text())
  with tempfile.TemporaryDirectory() as trace_dir:
    timed = benchmark.run_step(step, state, data, args.steps, warmup=2, profile_dir=trace_dir,
                               profile_steps=args.steps)
    times = thunk_times(benchmark.read_trace(trace_dir))
  wall_ms = timed["step_s"] * 1e3
  parts = breakdown(times, computations, instructions, args.steps)
  print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"{args.size}{''.join(' ' + s for s in args.set)}, batch {args.batch} x {args.seq_len}, "
        f"sampler {args.sampler}: {wall_ms:.0f} ms a step (wall, untraced)")
  print(f"{'kind':12s} {'ms/step (thunk time, all threads)':>34s}")
  for kind in KINDS:
    print(f"{kind:12s} {parts[kind]:34.1f}")
  print(f"{'total':12s} {sum(parts.values()):34.1f}")


if __name__ == "__main__":
  main()
