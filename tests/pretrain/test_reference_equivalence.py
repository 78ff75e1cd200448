"""Pre-training steps of electra_jax equal an independent PyTorch reference on transformers'
ELECTRA classes (tests/reference/torch_electra.py).

Both frameworks start from the same random weights (biases and LayerNorm parameters included) and
see the same batch. electra_jax's own random draws (`objective.corrupt`: masked positions, the
generator's input, the sampled replacements) are fed to the reference, which computes everything
else itself. Dropout is 0. Per objective kind:
  - every metric of the reference's `pretraining_loss` (loss terms within LOSS_RTOL relative,
    accuracies / AUC / fractions within 1e-6), the global gradient norm (LOSS_RTOL), and each
    parameter's gradient (GRAD_RTOL), mapped by name through `hf_io.params_to_state`;
  - the parameter change after two optimizer steps, with and without bias correction (within
    UPDATE_ATOL). The schedule has warmup_steps=2, so the first update has learning rate 0
    (checked: no parameter moves in either framework) and the second lr = peak x (1 - 1/T) x 1/2,
    with Adam moments from both steps' gradients.
The gradient of step 2 is taken at the initial weights with fresh draws, which is what a train
step computes there since step 1 moved nothing. The gradients come from `jax.value_and_grad` of
`pretraining_loss` and the update from `optim.make_optimizer`, the composition `make_train_step`
jits; `test_make_train_step` (slow) runs `make_train_step` itself. Kinds "uniform" (uniform
generator) and "replace_mlm" cost one more compile each and run in the slow suite. The reference's
own masking and sampling (its free-running mode) are checked against the rules directly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import linen as nn

from electra_jax.model.config import ModelConfig, generator_config
from electra_jax.pretrain import objective as ob
from electra_jax.runtime import optim
from tests.reference import torch_electra as te

V, L, B = 160, 48, 4
SPECIAL = ob.SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=V)
# Both towers have an embeddings_project (E=48 != H).
DISC = ModelConfig(vocab_size=V, embedding_size=48, hidden_size=64, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=128, max_position_embeddings=L,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GEN = generator_config(DISC, 0.5, 0.5)  # hidden 32, 1 head, FFN 128, 1 layer
KINDS = {
    "electra": ob.ObjectiveConfig(),
    "electra_15": ob.ObjectiveConfig(kind="electra_15"),
    "mlm": ob.ObjectiveConfig(kind="mlm"),
    "uniform": ob.ObjectiveConfig(uniform_generator=True),
    "replace_mlm": ob.ObjectiveConfig(kind="replace_mlm"),
}
SLOW_KINDS = ("uniform", "replace_mlm")  # one more compile each
KIND_PARAMS = [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_KINDS else k for k in KINDS]
# The loss terms each kind has (the others are 0 in both frameworks, and compared as well).
TERMS = {"electra": ("gen_loss", "disc_loss"), "electra_15": ("gen_loss", "disc_loss"),
         "mlm": ("mlm_loss",), "uniform": ("gen_loss", "disc_loss"),
         "replace_mlm": ("gen_loss", "mlm_loss")}
# lr and weight decay large enough that a decay wrongly applied to (or withheld from) LayerNorm
# parameters, biases (|p| ~ 0.1, see random_params) or kernels moves a parameter by more
# than UPDATE_ATOL: lr(1) x 0.1 x 0.1 = 4.5e-5.
OPTIMIZER = dict(learning_rate=1e-2, warmup_steps=2, total_steps=10, weight_decay=0.1,
                 clip_norm=1.0)
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4  # of the largest gradient entry of the same parameter, at least GRAD_FLOOR x
GRAD_FLOOR = 1e-3  # the largest entry of all (attention key biases have gradient 0 + rounding)
UPDATE_ATOL = 1e-5
# XLA's CPU code generation made cheap (LLVM optimisations off, the older loop emitters): a fifth
# of the default compile time here; the HLO, i.e. what is computed, is the same.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
        "xla_cpu_use_fusion_emitters": False}
LOSS_NAMES = ("loss", "gen_loss", "disc_loss", "mlm_loss")


def make_batch() -> dict:
  """[B,L] int32 ids with [CLS], a [SEP] after each of two segments, and padded rows; one real
  token is [PAD], as a generator sample or random replacement can be, so that the gradient of
  that lookup is checked too (nn.Embedding's padding_idx would drop it)."""
  rs = np.random.RandomState(0)
  ids = rs.randint(4, V, (B, L)).astype(np.int32)
  mask = np.zeros((B, L), np.int32)
  types = np.zeros((B, L), np.int32)
  for row, length in enumerate((L, L, 30, 17)):
    mid = length // 2
    mask[row, :length] = 1
    types[row, mid:length] = 1
    ids[row, [0, mid - 1, length - 1]] = (SPECIAL.cls, SPECIAL.sep, SPECIAL.sep)
  ids[mask == 0] = SPECIAL.pad
  ids[0, 5] = SPECIAL.pad
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def random_params(model) -> dict:
  """Params of `model`'s shapes: N(0, 0.1) entries, LayerNorm scales 1 + N(0, 0.1), so that
  biases and LayerNorm parameters matter (numpy: JAX's init would cost a compile)."""
  zeros = jnp.zeros((1, L), jnp.int32)
  shapes = jax.eval_shape(lambda: nn.unbox(model.init(
      jax.random.PRNGKey(0), zeros, jnp.ones_like(zeros), zeros,
      jnp.zeros((1, 1), jnp.int32))["params"]))
  rs = np.random.RandomState(1)

  def draw(path, leaf):
    noise = (0.1 * rs.standard_normal(leaf.shape)).astype(np.float32)
    return 1.0 + noise if path[-1].key == "scale" else noise

  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def jax_run(kind: str) -> dict:
  """electra_jax at random params, for draws from PRNGKey(1) and PRNGKey(2), and two optimizer
  steps (lr 0, then lr(1)) from the two gradients, with and without bias correction: {"params",
  "steps": [{"metrics", "grads", "draws"}], "updated": {bias_correction: [params after step 1,
  after step 2]}} (numpy)."""
  objective = KINDS[kind]
  model = ob.build_pretraining_model(DISC, GEN, "tied", objective)
  kw = dict(model=model, objective=objective, special=SPECIAL, deterministic=False)
  optimizers = {bc: optim.make_optimizer(optim.OptimizerConfig(**OPTIMIZER, bias_correction=bc))
                for bc in (True, False)}

  def run(params, batch, rngs):
    def step(rng):
      (_, metrics), grads = jax.value_and_grad(ob.pretraining_loss, has_aux=True)(
          params, batch, rng, **kw)
      metrics["grad_norm"] = optax.global_norm(grads)  # as make_train_step
      return metrics, grads, ob.corrupt(params, batch, rng, **kw)

    def optimize(tx):
      def update(carry, g):
        state, p = carry
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
        return (state, p), p

      return jax.lax.scan(update, (tx.init(params), params), grads)[1]

    metrics, grads, draws = jax.lax.map(step, rngs)
    return metrics, grads, draws, {bc: optimize(tx) for bc, tx in optimizers.items()}

  params = random_params(model)
  args = (params, make_batch(), jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)]))
  metrics, grads, draws, updated = jax.device_get(jax.jit(run, compiler_options=FAST)(*args))
  pick = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  steps = [{"metrics": pick(metrics, i), "grads": pick(grads, i), "draws": pick(draws, i)}
           for i in range(2)]
  updated = {bc: [pick(path, i) for i in range(2)] for bc, path in updated.items()}
  return {"params": params, "steps": steps, "updated": updated}


def to_torch(draws: dict) -> tuple[dict, te.Sampler]:
  """electra_jax draws -> (the reference's `masked` dict, a sampler returning its samples)."""
  masked = {k: torch.as_tensor(np.array(draws["masked"][k])) for k in
            ("input_ids", "positions", "weights", "masked_lm_ids")}
  masked = {k: v.float() if k == "weights" else v.long() for k, v in masked.items()}
  sampled = None if draws["sampled"] is None else torch.as_tensor(
      np.array(draws["sampled"])).long()
  return masked, lambda logits, shape: sampled


@functools.lru_cache(maxsize=None)
def torch_run(kind: str) -> list:
  """The reference on electra_jax's draws: per step {"metrics", "grads" (by HF name),
  "outputs"} (numpy)."""
  objective = KINDS[kind]
  run = jax_run(kind)
  ref = te.from_jax_params(run["params"], DISC, GEN, objective)
  batch = te.batch_to_torch(make_batch())
  named = ref.hf_parameters()
  steps = []
  for step in run["steps"]:
    masked, sample = to_torch(step["draws"])
    loss, metrics, outputs = te.pretraining_loss(ref, batch, masked, sample, objective, SPECIAL)
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in named.items()}
    unique = {id(p): p.grad for p in named.values()}.values()
    metrics["grad_norm"] = torch.sqrt(sum((g * g).sum() for g in unique))
    ref.zero_grad(set_to_none=True)
    steps.append({"metrics": {k: float(v) for k, v in metrics.items()}, "grads": grads,
                  "outputs": {k: None if v is None else v.detach().numpy()
                              for k, v in outputs.items()}})
  return steps


def rel_diff(a: float, b: float) -> float:
  return abs(a - b) / max(abs(a), abs(b), 1e-12)


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_losses_metrics_and_gradients(kind):
  jax_steps, torch_steps = jax_run(kind)["steps"], torch_run(kind)
  worst = {}
  for j, t in zip(jax_steps, torch_steps):
    draws = j["draws"]
    np.testing.assert_array_equal(t["outputs"]["big_input"], draws["big_input"])
    if draws["gen_logits"] is not None:
      np.testing.assert_allclose(t["outputs"]["gen_logits"], draws["gen_logits"], atol=1e-4)
    jm, tm = j["metrics"], t["metrics"]
    assert set(tm) <= set(jm), set(tm) - set(jm)
    assert all(float(jm[name]) > 0 for name in TERMS[kind])
    for name in tm:
      a, b = float(jm[name]), tm[name]
      if name in LOSS_NAMES + ("grad_norm",):
        worst[name] = max(worst.get(name, 0.0), rel_diff(a, b))
        assert rel_diff(a, b) <= LOSS_RTOL, (name, a, b)
      else:  # accuracies, AUC, fractions: the same decisions on the same tokens
        assert abs(a - b) <= 1e-6, (name, a, b)
    grads = te.jax_to_hf(j["grads"], DISC, GEN, KINDS[kind])
    assert set(grads) == set(t["grads"])
    floor = GRAD_FLOOR * max(float(np.max(np.abs(g))) for g in grads.values())
    for name, g in grads.items():
      scale = max(float(np.max(np.abs(g))), floor)
      diff = float(np.max(np.abs(g - t["grads"][name])))
      worst["grad"] = max(worst.get("grad", 0.0), diff / scale)
      assert diff <= GRAD_RTOL * scale, (name, diff, scale)
  print(f"\n{kind}: max relative diff " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_two_optimizer_steps(kind, bias_correction):
  objective = KINDS[kind]
  cfg = optim.OptimizerConfig(**OPTIMIZER, bias_correction=bias_correction)
  run = jax_run(kind)
  start = te.jax_to_hf(run["params"], DISC, GEN, objective)
  first, last = run["updated"][bias_correction]
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first),
                                                    jax.tree.leaves(run["params"])))
  jax_delta = {k: v - start[k] for k, v in te.jax_to_hf(last, DISC, GEN, objective).items()}

  ref = te.from_jax_params(run["params"], DISC, GEN, objective)
  named = ref.hf_parameters()
  opt = te.OfficialAdamW(named, cfg)
  for i, step in enumerate(torch_run(kind)):
    for name, p in named.items():
      p.grad = torch.from_numpy(step["grads"][name])
    stats = opt.step()
    assert stats["learning_rate"] == pytest.approx(cfg.learning_rate * 0.9 * 0.5 if i else 0.0)
    assert rel_diff(stats["grad_norm"], float(run["steps"][i]["metrics"]["grad_norm"])) \
        <= LOSS_RTOL
    if i == 0:
      assert all(np.array_equal(p.detach().numpy(), start[n]) for n, p in named.items())
  torch_delta = {n: p.detach().numpy() - start[n] for n, p in named.items()}

  assert set(jax_delta) == set(torch_delta)
  diff = {n: float(np.max(np.abs(jax_delta[n] - torch_delta[n]))) for n in jax_delta}
  size = max(float(np.max(np.abs(d))) for d in jax_delta.values())
  worst = max(diff, key=diff.get)
  print(f"\n{kind} bias_correction={bias_correction}: max |update diff| {diff[worst]:.1e} "
        f"({worst}; largest update {size:.1e})")
  assert size > 100 * UPDATE_ATOL
  assert diff[worst] <= UPDATE_ATOL, worst


@pytest.mark.parametrize("kind", ["electra", "mlm"])
def test_free_running_masking(kind):
  """The reference's own masking (free-running mode): per row the count electra_jax chose for
  the same batch, distinct candidate positions, the originals as targets, and the shown tokens
  in the kind's proportions over 200 draws ([MASK] / random / kept: 85/0/15, mlm 80/10/10)."""
  objective = KINDS[kind]
  batch = te.batch_to_torch(make_batch())
  ids = batch["input_ids"]
  counts = jax_run(kind)["steps"][0]["draws"]["masked"]["weights"].sum(1)
  candidates = (batch["attention_mask"] > 0) & (ids > SPECIAL.mask)  # ids 0..3 are the specials
  g = torch.Generator().manual_seed(0)
  shown = {"mask": 0, "kept": 0, "other": 0}
  for _ in range(200):
    m = te.mask_tokens(ids, batch["attention_mask"], SPECIAL, objective, g)
    np.testing.assert_array_equal(m["weights"].sum(1).numpy(), counts)
    for row in range(B):
      used = m["weights"][row] > 0
      pos = m["positions"][row][used]
      assert len(set(pos.tolist())) == len(pos) and bool(candidates[row, pos].all())
      assert torch.equal(m["masked_lm_ids"][row][used], ids[row, pos])
      untouched = torch.ones(L, dtype=torch.bool)
      untouched[pos] = False
      assert torch.equal(m["input_ids"][row][untouched], ids[row][untouched])
      new = m["input_ids"][row, pos]
      shown["mask"] += int((new == SPECIAL.mask).sum())
      shown["kept"] += int((new == ids[row, pos]).sum())
      shown["other"] += int(((new != SPECIAL.mask) & (new != ids[row, pos])).sum())
  total = sum(shown.values())
  want = {"mask": 0.8, "kept": 0.1, "other": 0.1} if kind == "mlm" else \
      {"mask": 0.85, "kept": 0.15, "other": 0.0}
  for k, share in want.items():  # 4200 slots: 0.02 is > 3.5 standard deviations
    assert abs(shown[k] / total - share) < 0.02, (k, shown)


def test_gumbel_sampler_draws_the_tempered_softmax():
  logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5]).expand(40000, 5)
  ids = te.sample_gumbel(logits, 2.0, torch.Generator().manual_seed(0))
  freq = torch.bincount(ids, minlength=5).float() / len(ids)
  want = torch.softmax(logits[0] / 2.0, dim=-1)
  assert float((freq - want).abs().max()) < 0.01  # > 4 standard deviations


@pytest.mark.slow
def test_make_train_step():
  """The jitted, sharded train step (kind electra, bias correction on, one device): metrics,
  grad_norm, learning_rate and the parameters after two steps equal the reference's, which is
  fed the draws of the step's own rng fold_in(state.rng, step)."""
  from electra_jax.runtime import mesh as shd
  from electra_jax.runtime import state as ts
  from electra_jax.runtime.step import make_train_step

  objective = KINDS["electra"]
  cfg = optim.OptimizerConfig(**OPTIMIZER, bias_correction=True)
  model = ob.build_pretraining_model(DISC, GEN, "tied", objective)
  tx = optim.make_optimizer(cfg)
  mesh = shd.make_mesh(shd.MeshConfig())
  state, shardings = ts.create_train_state(ob.init_fn(model, L), tx, mesh, seed=0)
  params = random_params(model)
  state = state.replace(params=jax.device_put(params, shardings.params))
  step_fn = make_train_step(ob.loss_fn(model, objective, SPECIAL), tx, mesh, shardings)
  batch = make_batch()
  # The batch goes in as an argument, as into the train step: as numpy constants, mask_tokens'
  # `candidates &= ...` also rewrites its numpy `real` in place and counts fewer tokens.
  draw = jax.jit(lambda p, b, rng: ob.corrupt(p, b, rng, model=model, objective=objective,
                                               special=SPECIAL, deterministic=False))

  ref = te.from_jax_params(params, DISC, GEN, objective)
  opt = te.OfficialAdamW(ref.hf_parameters(), cfg)
  torch_batch = te.batch_to_torch(batch)
  for _ in range(2):
    draws = jax.device_get(draw(state.params, batch, jax.random.fold_in(state.rng, state.step)))
    state, metrics = step_fn(state, shd.global_batch(batch, mesh))
    masked, sample = to_torch(draws)
    loss, ref_metrics, _ = te.pretraining_loss(ref, torch_batch, masked, sample, objective,
                                               SPECIAL)
    loss.backward()
    ref_metrics.update(opt.step())
    for name in LOSS_NAMES + ("grad_norm", "learning_rate"):
      assert rel_diff(float(metrics[name]), float(ref_metrics[name])) <= LOSS_RTOL, name
  ours = te.jax_to_hf(jax.device_get(state.params), DISC, GEN, objective)
  diff = max(float(np.max(np.abs(ours[n] - p.detach().numpy())))
             for n, p in ref.hf_parameters().items())
  print(f"\nmake_train_step: max |param diff| after 2 steps {diff:.1e}")
  assert diff <= UPDATE_ATOL
