"""Checkpoints are written atomically: a crash during a write leaves the previous file intact."""

import os

import pytest
import torch

from train import checkpoint as checkpoint_module
from train.checkpoint import AtomicCheckpointIO, atomic_write_bytes


def test_write_and_read_back(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}, "epoch": 3}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 3
    torch.testing.assert_close(loaded["state_dict"]["w"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


class CrashingFile:
    """A file object that writes half of what it is given and then dies (like a killed process)."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise KeyboardInterrupt("killed mid-write")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.parametrize("crash", ["mid-write", "before-rename"])
def test_crash_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch, crash):
    path = tmp_path / "best.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    old_bytes = path.read_bytes()

    if crash == "mid-write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(checkpoint_module.os, "fdopen", lambda fd, mode: CrashingFile(real_fdopen(fd, mode)))
    else:
        def no_rename(*args):
            raise KeyboardInterrupt("killed before the rename")
        monkeypatch.setattr(checkpoint_module.os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert io.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]  # the temporary file is removed


def test_replaces_an_existing_file_completely(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"x" * 100)
    atomic_write_bytes(path, b"short")
    assert path.read_bytes() == b"short"
