"""The one gin edge for every config class: gin files and bindings (`--gin_bindings` / `--set`)
become frozen config dataclasses at the command line, and gin's errors become one clear ValueError.

Library code never reads gin. A command resolves its config with
`parse(files, bindings, fields, build)`: bindings gin would silently ignore are refused first
(`check_bindings`), gin's global state is cleared before and after, `build()` calls the bound
configurables (`configurable` / `dataclass_configurable`, registered once per process and shared by
every command), and gin's errors are rewritten by `explain_gin_error`. Pre-training
(electra_jax.pretrain.config) and fine-tuning (electra_jax.finetune.config) both resolve here.

`fields` is {gin selector: its field names}, e.g. {"MeshConfig": ["data", "fsdp", "tensor"]}.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import logging
import re
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gin
from gin import config_parser

_CONFIGURABLES: dict[str, Any] = {}


def _fits(value: Any, hint: Any) -> bool:
  """Whether `value` may be bound to a field annotated `hint` (ints fit floats, bools fit only
  bools, lists fit tuples)."""
  if typing.get_origin(hint) is typing.Union:
    return any(_fits(value, h) for h in typing.get_args(hint))
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is tuple:
    return isinstance(value, (tuple, list))
  return not isinstance(hint, type) or isinstance(value, hint)


def check_value_types(selector: str, hints: dict, values: dict) -> None:
  """ValueError naming `selector.FIELD`, the value and the expected type for a value of `values`
  that does not fit its field's annotation in `hints` (e.g. `hidden_size = "64"`, which would
  otherwise fail deep inside validation, or `tensorboard = "no"`, which would read as True)."""
  for name, value in values.items():
    hint = hints.get(name)
    if hint is None or _fits(value, hint):
      continue
    expected = " or ".join("None" if t is type(None) else t.__name__
                           for t in typing.get_args(hint) or (hint,))
    unquoted = ""
    if isinstance(value, str):
      try:
        fits_unquoted = _fits(ast.literal_eval(value), hint)
      except (ValueError, SyntaxError):
        fits_unquoted = False
      if fits_unquoted:
        unquoted = f"; without the quotes: {selector}.{name} = {value}"
    raise ValueError(f"{selector}.{name} = {value!r}: expected {expected}{unquoted}")


def configurable(name: str, signature: inspect.Signature, hints: dict,
                 build: Callable[..., Any]) -> Callable[[], Any]:
  """The gin configurable `name`, registered on first use: calling it checks the bound values
  against `hints` (`check_value_types`) and returns `build(**bound_values)`. Registered once per
  process, so the first registration of a name is the one every later caller gets."""
  if name not in _CONFIGURABLES:
    def factory(**kwargs):
      check_value_types(name, hints, kwargs)
      return build(**kwargs)

    factory.__signature__ = signature
    factory.__name__ = name
    _CONFIGURABLES[name] = gin.external_configurable(factory, name=name)
  return _CONFIGURABLES[name]


def dataclass_configurable(cls) -> Callable[[], Any]:
  """`configurable` for a frozen config dataclass: selector cls.__name__, builds a `cls`."""
  return configurable(cls.__name__, inspect.signature(cls), typing.get_type_hints(cls), cls)


def field_names(cls) -> list[str]:
  return [f.name for f in dataclasses.fields(cls)]


def _owners(field: str, fields: dict) -> list[str]:
  return [selector for selector, names in fields.items() if field in names]


def _with_quotes(line: str, fields: dict) -> Optional[str]:
  """`line` (`SELECTOR.FIELD = VALUE`) with VALUE quoted as a string, and a bare FIELD given the
  one selector that has it; None when `line` is no such assignment."""
  key, eq, value = (part.strip() for part in line.partition("="))
  if not eq or not value or not re.fullmatch(r"[A-Za-z_][\w./]*", key):
    return None
  owners = _owners(key, fields)
  if "." not in key and len(owners) == 1:
    key = f"{owners[0]}.{key}"
  unquoted = value.strip("'\"")
  return f"{key} = {json.dumps(unquoted)}"


def _bare_field_hint(field: str, value: str, fields: dict) -> str:
  """'did you mean SELECTOR.FIELD = VALUE?' for a field given without its selector."""
  candidates = [(s, field) for s in _owners(field, fields)]
  unknown = ""
  if not candidates:
    every = sorted({name for names in fields.values() for name in names})
    close = difflib.get_close_matches(field, every, n=3, cutoff=0.6)
    candidates = [(s, name) for name in close for s in _owners(name, fields)]
    unknown = f"no config has a field {field!r}; "
  if not candidates:
    return (f"{unknown}bindings look like SELECTOR.FIELD = VALUE with SELECTOR one of "
            f"{', '.join(fields)}")
  return unknown + "did you mean " + " or ".join(f"'{s}.{name} = {value}'"
                                                 for s, name in candidates) + "?"


def _syntax_message(err: SyntaxError) -> str:
  """Gin's syntax error message without the Python-parser line before its last."""
  return err.msg.strip().splitlines()[-1].strip()


def check_bindings(bindings: Sequence[str], fields: dict) -> None:
  """Refuses, before gin reads them, the bindings that gin would ignore or cannot parse.

  Accepted: `SELECTOR.FIELD = VALUE` (gin then checks SELECTOR and FIELD, the configurables the
  value's type) and `include 'FILE.gin'`. ValueError with the right spelling for a bare
  `FIELD = VALUE` (gin reads it as a macro, which no config uses, and ignores it), a scoped
  `scope/SELECTOR.FIELD = VALUE` (no config is built in a scope), an import, and a syntax error
  (values are Python literals: a string needs quotes). Macros are not bindings; define them in a
  gin file.
  """

  class Unresolved(config_parser.ParserDelegate):
    """Parses @references and %macros without resolving them (gin does that later)."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
      return None

    def macro(self, macro_name):
      return None

  for binding in bindings:
    try:
      statements = list(config_parser.ConfigParser(binding, Unresolved()))
    except SyntaxError as err:
      fixed = _with_quotes(binding, fields)
      hint = (f"values are Python literals, so a string needs quotes inside the shell's: "
              f"'{fixed}'" if fixed else
              f"bindings look like SELECTOR.FIELD = VALUE with SELECTOR one of "
              f"{', '.join(fields)}")
      raise ValueError(f"cannot parse gin binding {binding!r} ({_syntax_message(err)}); "
                       f"{hint}") from None
    for st in statements:
      if isinstance(st, (config_parser.IncludeStatement, config_parser.BlockDeclaration)):
        continue
      if not isinstance(st, config_parser.BindingStatement):
        raise ValueError(f"gin binding {binding!r}: only SELECTOR.FIELD = VALUE bindings and "
                         "include 'FILE.gin' are accepted")
      value = st.location.line_content.partition("=")[2].strip()
      if not st.arg_name:  # gin's macro syntax: `NAME = VALUE`
        raise ValueError(f"gin binding {binding!r} names no config, so gin would read it as an "
                         f"unused macro and ignore it; "
                         f"{_bare_field_hint(st.selector, value, fields)}")
      if st.scope:
        raise ValueError(f"gin binding {binding!r}: no config is built in scope "
                         f"{st.scope!r}, so gin would ignore it; write "
                         f"'{st.selector}.{st.arg_name} = {value}'")


def _unclosed_bracket(path: str, before_line: int) -> Optional[tuple[str, int, str]]:
  """(bracket, line number, line) of the last bracket in gin file `path` still open when line
  `before_line` starts (strings and comments skipped); None when all are closed or the file
  cannot be read."""
  try:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
  except (OSError, UnicodeDecodeError):
    return None
  pairs, stack = {")": "(", "]": "[", "}": "{"}, []
  for number, text in enumerate(lines[:before_line - 1], 1):
    quote = None
    for char in text:
      if quote:
        quote = None if char == quote else quote
      elif char in "'\"":
        quote = char
      elif char == "#":
        break
      elif char in "([{":
        stack.append((char, number, text.strip()))
      elif char in pairs and stack and stack[-1][0] == pairs[char]:
        stack.pop()
  return stack[-1] if stack else None


def explain_gin_syntax_error(err: SyntaxError, fields: dict) -> ValueError:
  """A gin file's syntax error as one ValueError naming the file and line, with the quoting a
  string value needs when that is the likely fix; a bracket left open on an earlier line is
  named with its line (gin reports the line where it notices)."""
  line = (err.text or "").strip()
  opened = _unclosed_bracket(err.filename, err.lineno) if err.filename and err.lineno else None
  if opened:
    bracket, number, text = opened
    return ValueError(f"cannot parse gin file {err.filename}, line {number}: {bracket!r} is "
                      f"never closed in `{text}` (gin noticed on line {err.lineno}: "
                      f"{_syntax_message(err)})")
  fixed = _with_quotes(line, fields)
  hint = f"\nValues are Python literals, so a string needs quotes: {fixed}" if fixed else ""
  return ValueError(f"cannot parse gin file {err.filename}, line {err.lineno} "
                    f"({_syntax_message(err)}):\n  {line}{hint}")


def explain_gin_error(err: Exception, fields: dict, nested: Optional[dict] = None) -> Exception:
  """Rewrites gin's errors as one clear ValueError: syntax errors in files, unknown selectors and
  parameters (with close matches), undefined macros, and our own validation errors (without
  gin's "In call to configurable" suffix). Other errors come back unchanged. `nested`: {field of
  the top config: its config class}, for the hint that nested configs bind through their own
  class (`ModelConfig.hidden_size`, not `TrainConfig.model`)."""
  nested = nested or {}
  if isinstance(err, SyntaxError):
    return explain_gin_syntax_error(err, fields)
  text = str(err)
  selectors = list(fields)
  m = re.search(r"No configurable matching '([^']+)'", text)
  if m:
    attr = nested.get(m.group(1))
    close = ([attr.__name__] if attr else []) or difflib.get_close_matches(
        m.group(1), selectors, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown gin binding target {m.group(1)!r}.{hint} Known: "
                      f"{', '.join(selectors)}.\n{text}")
  m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", text)
  if m:
    close = difflib.get_close_matches(m.group(2), fields.get(m.group(1), []), n=3, cutoff=0.5)
    close += [f"{s}.{m.group(2)}" for s in _owners(m.group(2), fields)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    nested_hint = (" (nested configs are bound through their own class, e.g. "
                   "ModelConfig.hidden_size)" if m.group(2) in nested else "")
    return ValueError(f"unknown gin binding {m.group(1)}.{m.group(2)}.{hint}{nested_hint} "
                      f"Fields: {', '.join(fields.get(m.group(1), []))}.\n{text}")
  m = re.search(r"In call to configurable 'macro' .* in scope '([^']+)'", text)
  if isinstance(err, TypeError) and m:
    return ValueError(f"gin macro %{m.group(1)} is used but never defined; define it in a gin "
                      f"file ({m.group(1)} = VALUE) or bind the field directly")
  if isinstance(err, ValueError) and "\n  In call to configurable" in text:
    return ValueError(text.split("\n  In call to configurable")[0])
  return err


def _quiet_include_search(record: logging.LogRecord) -> bool:
  """Drops gin's "Path not found" log lines: an `include 'base.gin'` is looked up in the working
  directory before the search paths, and each miss is logged although the include succeeds."""
  return not str(record.msg).startswith("Path not found")


def query(name: str) -> Any:
  """The value gin binds to `name` (SELECTOR.FIELD) while `build` runs, or None."""
  try:
    return gin.query_parameter(name)
  except ValueError:
    return None


def bound_fields(selector: str, names: Sequence[str]) -> list[str]:
  """Those of `names` that gin binds for `selector` (to any value, None included) while `build`
  runs, e.g. to lay just those over defaults other than the class's own."""
  bound = []
  for name in names:
    try:
      gin.query_parameter(f"{selector}.{name}")
    except ValueError:
      continue
    bound.append(name)
  return bound


def parse(files: Sequence[str], bindings: Sequence[str], fields: dict, build: Callable[[], Any],
          nested: Optional[dict] = None) -> Any:
  """Parses gin `files`, then `bindings` (later wins), and returns `build()`, which calls the
  configurables it needs. FileNotFoundError for a missing file; ValueError for a binding gin
  would ignore (`check_bindings`), an unknown selector or field (with close matches), a value
  of the wrong type, or a syntax error (with the file and line, or the binding). Gin's bindings
  are cleared before and after, so nothing leaks into library code."""
  for f in files:
    if not Path(f).is_file():
      raise FileNotFoundError(f"gin file {f} does not exist")
  check_bindings(bindings, fields)
  gin.clear_config()
  root_logger = logging.getLogger()
  root_logger.addFilter(_quiet_include_search)
  try:
    gin.parse_config_files_and_bindings([str(f) for f in files], list(bindings),
                                        finalize_config=False)
    return build()
  except (ValueError, SyntaxError, TypeError) as err:
    raise explain_gin_error(err, fields, nested) from None
  except ImportError as err:  # a gin file's `import MODULE`
    where = re.search(r'In file "([^"]+)", line (\d+)', str(err))
    place = f"gin file {where.group(1)}, line {where.group(2)}" if where else "a gin file"
    raise ValueError(f"{place}: {str(err).splitlines()[0]}; install the module or remove the "
                     "import") from None
  finally:
    root_logger.removeFilter(_quiet_include_search)
    gin.clear_config()
