"""docs/step_breakdown.py: the HLO reader and the kind each thunk's work is counted under."""

import collections
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp

SPEC = importlib.util.spec_from_file_location(
    "step_breakdown", Path(__file__).parents[2] / "docs" / "step_breakdown.py")
sb = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sb)

HLO = """HloModule m, entry_computation_layout={(f32[4,8]{1,0})->f32[8,4]{1,0}}

%add.r (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(f32[] %a, f32[] %b)
}

%fused_dot (p0: f32[4,8], p1: f32[8,8]) -> f32[4,8] {
  %p0 = f32[4,8]{1,0} parameter(0)
  %p1 = f32[8,8]{1,0} parameter(1)
  %dot.3 = f32[4,8]{1,0} dot(f32[4,8]{1,0} %p0, f32[8,8]{1,0} %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %erf.1 = f32[4,8]{1,0} erf(f32[4,8]{1,0} %dot.3)
}

%fused_t (p0.1: f32[4,8]) -> f32[8,4] {
  %p0.1 = f32[4,8]{1,0} parameter(0)
  ROOT %transpose.2 = f32[8,4]{1,0} transpose(f32[4,8]{1,0} %p0.1), dimensions={1,0}
}

%fused_sum (p0.2: f32[4,8]) -> f32[4] {
  %p0.2 = f32[4,8]{1,0} parameter(0)
  %c = f32[] constant(0)
  ROOT %reduce.4 = f32[4]{0} reduce(f32[4,8]{1,0} %p0.2, f32[] %c), dimensions={1}, to_apply=%add.r
}

ENTRY %main (x: f32[4,8], w: f32[8,8]) -> (f32[8,4], f32[4], f32[4,2]) {
  %x = f32[4,8]{1,0} parameter(0)
  %w = f32[8,8]{1,0} parameter(1)
  %dot_fusion = f32[4,8]{1,0} fusion(f32[4,8]{1,0} %x, f32[8,8]{1,0} %w), kind=kOutput, calls=%fused_dot
  %transpose_fusion = f32[8,4]{1,0} fusion(f32[4,8]{1,0} %dot_fusion), kind=kLoop, calls=%fused_t
  %reduce_fusion = f32[4]{0} fusion(f32[4,8]{1,0} %x), kind=kLoop, calls=%fused_sum
  %custom-call.1 = (f32[4,2]{1,0}, s32[4,2]{1,0}) custom-call(f32[4,8]{1,0} %x), custom_call_target="TopK"
  %gte = f32[4,2]{1,0} get-tuple-element((f32[4,2]{1,0}, s32[4,2]{1,0}) %custom-call.1), index=0
  ROOT %tuple = (f32[8,4]{1,0}, f32[4]{0}, f32[4,2]{1,0}) tuple(f32[8,4]{1,0} %transpose_fusion, f32[4]{0} %reduce_fusion, f32[4,2]{1,0} %gte)
}
"""


def test_each_fusion_is_counted_by_what_its_computation_does():
  computations, instructions = sb.parse_hlo(HLO)
  kinds = {name: sb.kind_of(sb.opcodes_of(name, computations, instructions))
           for name in ("dot_fusion", "transpose_fusion", "reduce_fusion", "custom-call.1")}
  # the dot's erf epilogue stays matmul work; the reduction's reducer (add) is followed
  assert kinds == {"dot_fusion": "matmul", "transpose_fusion": "layout",
                   "reduce_fusion": "reduce", "custom-call.1": "sort"}
  assert sb.opcodes_of("reduce_fusion", computations, instructions) >= {"reduce", "add"}


def test_kinds_of_opcode_sets():
  assert sb.kind_of({"shift-right-logical", "xor", "add", "or"}) == "random"
  assert sb.kind_of({"broadcast", "parameter"}) == "broadcast"
  assert sb.kind_of({"erf", "multiply"}) == "erf"
  assert sb.kind_of({"select", "compare", "multiply"}) == "elementwise"
  assert sb.kind_of({"copy"}) == "layout"


def test_breakdown_sums_thunk_events_by_kind_and_skips_loops_and_runtime_events():
  computations, instructions = sb.parse_hlo(HLO)
  instructions["while.9"] = ("while", ["body"])
  times = collections.Counter({"dot_fusion": 3000.0, "transpose_fusion": 1000.0,
                               "custom-call.1": 500.0, "while.9": 9e6,
                               "ThunkExecutor::Execute": 9e6})
  parts = sb.breakdown(times, computations, instructions, steps=2)
  assert parts["matmul"] == 1.5 and parts["layout"] == 0.5 and parts["sort"] == 0.25
  assert sum(parts.values()) == 2.25


def test_a_compiled_matmul_is_found_in_real_compiler_output():
  text = jax.jit(lambda x, w: jnp.tanh(x @ w)).lower(
      jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
  computations, instructions = sb.parse_hlo(text)
  kinds = {sb.kind_of(sb.opcodes_of(n, computations, instructions)) for n in instructions}
  assert "matmul" in kinds
