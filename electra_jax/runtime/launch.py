"""The command-line edge shared by `electra_jax.train` and `electra_jax.finetune`: multi-process
flags, `jax.distributed` start-up, and `run_pipeline`, the one run-to-exit-status block of both
mains (their error lines, exit statuses, results and closing message)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import jax

from electra_jax.floor import cli
from electra_jax.runtime.mesh import set_cpu_xla_flags


def add_distributed_flags(parser: argparse.ArgumentParser) -> None:
  """--distributed, --coordinator_address, --num_processes, --process_id, --cpu_collectives."""
  parser.add_argument("--distributed", action="store_true", help="call "
                      "jax.distributed.initialize (auto-detects TPU pods, SLURM, Open MPI; else "
                      "give the three flags below)")
  parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-host)")
  parser.add_argument("--num_processes", type=int)
  parser.add_argument("--process_id", type=int)
  parser.add_argument("--cpu_collectives", action="store_true", help="use gloo collectives "
                      "between CPU processes (automatic when JAX_PLATFORMS=cpu)")


def initialize_distributed(args: argparse.Namespace) -> None:
  """jax.distributed.initialize when asked (--distributed, --coordinator_address or the
  JAX_COORDINATOR_ADDRESS variable); on CPU, cross-process collectives go through gloo."""
  wanted = args.distributed or args.coordinator_address or os.environ.get(
      "JAX_COORDINATOR_ADDRESS")
  if not wanted:
    return
  if (os.environ.get("JAX_PLATFORMS", "") or "").startswith("cpu") or args.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=args.coordinator_address,
                             num_processes=args.num_processes, process_id=args.process_id)


def run_pipeline(args: argparse.Namespace, resolve: Callable[[], Any], run: Callable[[Any], Any],
                 *, summary: Callable[[Any], str], closing: Callable[[Any], str],
                 interrupted: str, failures: tuple[type[Exception], ...] = ()) -> int:
  """A pipeline's main after parsing, as an exit status: the CPU XLA flags (before JAX starts its
  backend), then under `cli.run_command` (one `error:` line, status 2 for bad input or
  configuration, 1 for any other failure, 130 for Ctrl-C) `resolve()` the config, the
  distributed start-up and `run(config)`.

  The run's own ends: Ctrl-C in it is the line "error: interrupted (Ctrl-C)" + `interrupted` (what
  was kept) and status 130; one of `failures` (whose message says why the run failed) is
  "error: MESSAGE" and status 1. After a run, process 0 prints `summary(result)` on stdout and
  `closing(result)` (where the outputs are, what to run next) on stderr; the status is 0.
  """
  set_cpu_xla_flags()

  def body() -> int:
    config = resolve()
    initialize_distributed(args)
    try:
      result = run(config)
    except failures as err:
      print(f"error: {err}", file=sys.stderr)
      return cli.EXIT_FAILED
    except KeyboardInterrupt:
      print(f"error: interrupted (Ctrl-C){interrupted}", file=sys.stderr)
      return cli.EXIT_INTERRUPTED
    if jax.process_index() == 0:
      print(summary(result), flush=True)
      print(closing(result), file=sys.stderr, flush=True)
    return 0

  return cli.run_command(body)
