"""The closing message of both pipelines' command lines: where a finished run's outputs are and
the commands that use them next, printed on stderr after the results.

    outputs in WORKDIR:
      WHAT: WHERE          one line per output that exists
    next:
      WHAT: COMMAND        one line per next command (the section is left out when none)
"""

from __future__ import annotations

import shlex

from electra_jax.floor import fs


class Closing:
  """The closing message of the run in `workdir`, written line by line; str() is the message."""

  def __init__(self, workdir: str):
    self._outputs = [f"outputs in {workdir}:"]
    self._next: list[str] = []

  def output(self, what: str, where: str) -> None:
    """An output line: `where` is a path, a list of paths or a command."""
    self._outputs.append(f"  {what}: {where}")

  def output_if_exists(self, what: str, path: str) -> None:
    """An output line for `path`, if it exists (a file or a directory)."""
    if fs.exists(path):
      self.output(what, path)

  def tensorboard(self, logdir: str, runs: str, what: str = "TensorBoard") -> None:
    """The TensorBoard command on `logdir`, if the glob `runs` finds an event directory."""
    if fs.glob(runs):
      self.output(what, f"tensorboard --logdir {shlex.quote(logdir)}")

  def wandb_offline(self, root: str, runs: str) -> None:
    """The command that uploads offline W&B runs, if the glob `runs` (relative to the directory
    `root`, ending in the runs' directories) finds any: `wandb sync ROOT/RUNS`."""
    if fs.glob(fs.join(root, runs)):
      self.output("upload offline W&B runs", f"wandb sync {shlex.quote(root)}/{runs}")

  def then(self, what: str, command: str) -> None:
    """A line of the `next:` section."""
    self._next.append(f"  {what}: {command}")

  def __str__(self) -> str:
    return "\n".join(self._outputs + (["next:"] + self._next if self._next else []))
