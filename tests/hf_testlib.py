"""Hugging Face datasets test helper shared by tests in several directories: the autouse fixture
`offline` (import it by name into a test module) keeps `datasets` off the network."""

import socket

import pytest


@pytest.fixture(autouse=True)
def offline(tmp_path_factory, monkeypatch):
  """Offline mode, a cache in the test's temp tree, and a record of any network connection."""
  import datasets
  import huggingface_hub.constants

  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  # datasets and huggingface_hub read these once, at import
  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_cache")
  attempts = []
  connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

  def guarded_connect(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
      attempts.append(address)
      raise OSError(f"hf_testlib: network access to {address}")
    return connect(self, address, *args, **kwargs)

  def guarded_getaddrinfo(host, *args, **kwargs):  # a lookup comes first, and fails without a network
    if host not in (None, "localhost", "127.0.0.1", "::1"):
      attempts.append(host)
      raise socket.gaierror(f"hf_testlib: network lookup of {host}")
    return getaddrinfo(host, *args, **kwargs)

  monkeypatch.setattr(socket.socket, "connect", guarded_connect)
  monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
  yield
  assert not attempts, f"datasets tried to reach the network: {attempts}"
