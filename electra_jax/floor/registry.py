"""The one registry of named extension objects (objective kinds, fine-tuning task kinds,
checkpoint formats): a dict from each object's `name` to the object, in registration order."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class Registry(dict):
  """{name: object}; `register(obj)` adds `obj` under `obj.name` and refuses an empty or taken
  name with a ValueError naming `what` ("task kind", ...) and the names registered."""

  def __init__(self, what: str):
    super().__init__()
    self.what = what

  def register(self, obj: T) -> T:
    if not obj.name or obj.name in self:
      raise ValueError(f"{self.what} name {obj.name!r} is empty or taken: {sorted(self)}")
    self[obj.name] = obj
    return obj
