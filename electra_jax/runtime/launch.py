"""The command-line edge shared by `electra_jax.train` and `electra_jax.finetune`: multi-process
flags and `jax.distributed` start-up."""

from __future__ import annotations

import argparse
import os

import jax


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
