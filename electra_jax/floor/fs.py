"""Paths on the local disk or on any file system tf.io.gfile serves, behind one set of functions.

A path with a URL scheme (`gs://bucket/run`, `ram://x`, or `s3://` / `hdfs://` ... where their
TensorFlow file-system plugin is installed) goes to tf.io.gfile; TensorFlow is imported on the
first such call, through `electra_jax.floor.tf_runtime` (accelerators hidden). Any other path goes
to os / open / shutil exactly as code without this module would call them, so local behaviour
is unchanged (and TensorFlow is not imported for it).

Errors of remote calls are those of local ones: TensorFlow's NotFoundError becomes
FileNotFoundError, PermissionDeniedError PermissionError, AlreadyExistsError FileExistsError and
any other tf.errors.OpError OSError, each naming the path. A scheme that tf.io.gfile does not
serve (s3:// without its plugin) and a URL with a slash missing (`gs:/bucket/run`, which the
local file system would take as a relative directory "gs:") are ValueErrors naming the path.
Authentication is the environment's: for gs://, Google's application default credentials
(`gcloud auth application-default login`, or the VM's service account).
"""

import builtins
import contextlib
import errno
import glob as glob_lib
import io
import os
import posixpath
import re
import shutil

from electra_jax.floor.tf_runtime import tensorflow

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BROKEN_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)(.*)$")


def is_remote(path):
  """True for a URL (`scheme://...`), served by tf.io.gfile; False for a local path.
  ValueError for a URL with a slash missing (`gs:/bucket`)."""
  path = os.fspath(path)
  if _URL.match(path):
    return True
  broken = _BROKEN_URL.match(path)
  if broken:
    scheme, rest = broken.groups()
    raise ValueError(f"{path!r} is neither a local path nor a URL: did you mean "
                     f"'{scheme}://{rest}'?")
  return False


@contextlib.contextmanager
def _gfile_errors(path):
  """Maps TensorFlow's errors in the block to the OSError a local call raises (or ValueError
  for a scheme without a file system)."""
  tf = tensorflow()
  try:
    yield
  except tf.errors.OpError as err:
    reason = (err.message or type(err).__name__).splitlines()[0]
    if isinstance(err, tf.errors.UnimplementedError) and "File system scheme" in reason:
      scheme = _URL.match(path).group(1)
      raise ValueError(
          f"cannot use {path}: tf.io.gfile has no file system for {scheme}:// ({reason}); "
          "gs:// is built into TensorFlow, other schemes need their TensorFlow file-system "
          "plugin (e.g. tensorflow-io for s3:// and hdfs://), or give a local path") from None
    for kind, error, code in ((tf.errors.NotFoundError, FileNotFoundError, errno.ENOENT),
                              (tf.errors.PermissionDeniedError, PermissionError, errno.EACCES),
                              (tf.errors.AlreadyExistsError, FileExistsError, errno.EEXIST)):
      if isinstance(err, kind):
        raise error(code, reason or os.strerror(code), path) from None
    raise OSError(errno.EIO, reason, path) from None


def _gfile():
  return tensorflow().io.gfile


def join(path, *parts):
  """`path` joined with `parts` by "/" (os.path.join for a local path)."""
  path = os.fspath(path)
  return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def dirname(path):
  """The directory of `path`; the root of a URL (`gs://bucket`) is its own directory."""
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.dirname(path)
  root_end = _URL.match(path).end()
  head = posixpath.dirname(path.rstrip("/"))
  return head if len(head) > root_end else path.rstrip("/")


def basename(path):
  """The last component of `path` (of a URL without its trailing slash)."""
  path = os.fspath(path)
  return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


def abspath(path):
  """A local path made absolute (os.path.abspath); a URL as it is."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def exists(path):
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.exists(path)
  with _gfile_errors(path):
    return _gfile().exists(path)


def isdir(path):
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.isdir(path)
  with _gfile_errors(path):
    return _gfile().isdir(path)


def isfile(path):
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.isfile(path)
  with _gfile_errors(path):
    return _gfile().exists(path) and not _gfile().isdir(path)


def makedirs(path):
  """Creates `path` and its parents; an existing directory is fine."""
  path = os.fspath(path)
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)
    return
  with _gfile_errors(path):
    _gfile().makedirs(path)


def listdir(path):
  """Names of the entries of directory `path` (without a trailing slash)."""
  path = os.fspath(path)
  if not is_remote(path):
    return os.listdir(path)
  with _gfile_errors(path):
    return [name.rstrip("/") for name in _gfile().listdir(path)]


def glob(pattern):
  """Paths matching `pattern` (glob.glob locally)."""
  pattern = os.fspath(pattern)
  if not is_remote(pattern):
    return glob_lib.glob(pattern)
  with _gfile_errors(pattern):
    return _gfile().glob(pattern)


def getsize(path):
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.getsize(path)
  with _gfile_errors(path):
    return _gfile().stat(path).length


def remove(path):
  path = os.fspath(path)
  if not is_remote(path):
    os.remove(path)
    return
  with _gfile_errors(path):
    _gfile().remove(path)


def rmtree(path):
  path = os.fspath(path)
  if not is_remote(path):
    shutil.rmtree(path)
    return
  with _gfile_errors(path):
    _gfile().rmtree(path)


def replace(src, dst):
  """Renames `src` to `dst`, replacing it: os.replace (atomic) locally; tf.io.gfile.rename with
  overwrite remotely (on an object store a copy and a delete, each object written whole)."""
  src, dst = os.fspath(src), os.fspath(dst)
  if not (is_remote(src) or is_remote(dst)):
    os.replace(src, dst)
    return
  with _gfile_errors(dst if is_remote(dst) else src):
    _gfile().rename(src, dst, overwrite=True)


def copy(src, dst):
  """Copies the file `src` to `dst` (either may be local or remote), replacing `dst`."""
  src, dst = os.fspath(src), os.fspath(dst)
  if not (is_remote(src) or is_remote(dst)):
    shutil.copyfile(src, dst)
    return
  with _gfile_errors(dst if is_remote(dst) else src):
    _remove_before_rewrite(dst)
    _gfile().copy(src, dst, overwrite=True)


def _remove_before_rewrite(path):
  """Deletes the remote file `path` if there is one: TensorFlow's ram:// file system appends to
  an existing file that is opened for writing (or copied onto) instead of replacing it."""
  if is_remote(path) and _gfile().exists(path):
    _gfile().remove(path)


def open_bytes(path):
  """`path` opened for reading bytes (read, seek, tell; a context manager)."""
  path = os.fspath(path)
  if not is_remote(path):
    return builtins.open(path, "rb")
  with _gfile_errors(path):
    if not _gfile().exists(path):  # GFile opens lazily: fail here, as open() does
      raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return _gfile().GFile(path, "rb")


def read_bytes(path):
  path = os.fspath(path)
  if not is_remote(path):
    with builtins.open(path, "rb") as f:
      return f.read()
  with _gfile_errors(path):
    with open_bytes(path) as f:
      return f.read()


class TextDecodeError(UnicodeDecodeError):
  """A file that is not text in its encoding; the message names the file, line and byte."""

  def __str__(self):
    return self.message


def read_text(path, encoding="utf-8"):
  """The text of `path`, decoded and with universal newlines as open(path, encoding=...).
  A byte that is not `encoding` raises TextDecodeError (a UnicodeDecodeError, so a ValueError)
  naming FILE:LINE, the byte and the fix."""
  path = os.fspath(path)
  data = read_bytes(path)
  try:
    return io.TextIOWrapper(io.BytesIO(data), encoding=encoding).read()
  except UnicodeDecodeError as err:
    # The wrapper decodes in chunks: find the bad byte in the whole file.
    try:
      data.decode(encoding)
    except UnicodeDecodeError as whole:
      err = whole
    line = data[:err.start].count(b"\n") + 1
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    bad = TextDecodeError(err.encoding, err.object, err.start, err.end, err.reason)
    bad.message = (f"{path}:{line}: byte 0x{data[err.start]:02x} at column {column} is not "
                   f"{encoding.removesuffix('-sig').upper()} text ({err.reason}); save the file "
                   "as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)")
    raise bad from None


def write_bytes(path, data):
  path = os.fspath(path)
  if not is_remote(path):
    with builtins.open(path, "wb") as f:
      f.write(data)
    return
  with _gfile_errors(path):
    _remove_before_rewrite(path)
    with _gfile().GFile(path, "wb") as f:
      f.write(data)


def write_text(path, text, encoding="utf-8"):
  write_bytes(path, text.encode(encoding))


def append_text(path, text, encoding="utf-8"):
  """Appends `text` to `path` (created if missing). On an object store this rewrites the object
  (tf.io.gfile reads it and writes it back whole)."""
  path = os.fspath(path)
  if not is_remote(path):
    with builtins.open(path, "a", encoding=encoding) as f:
      f.write(text)
    return
  with _gfile_errors(path):
    with _gfile().GFile(path, "ab") as f:
      f.write(text.encode(encoding))


def write_atomically(path, data):
  """Writes `data` (str or bytes) to path + ".tmp", then renames it to `path` (`replace`): a
  process killed meanwhile leaves the old file whole."""
  path = os.fspath(path)
  tmp = path + ".tmp"
  if isinstance(data, str):
    write_text(tmp, data)
  else:
    write_bytes(tmp, data)
  replace(tmp, path)
