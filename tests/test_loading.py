"""Weights load only from safetensors or torch.load(weights_only=True)."""
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from models.loading import WeightsError, load_state_dict


def test_safetensors_and_plain_checkpoints_load(tmp_path):
    tensors = {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4)}
    save_file(tensors, tmp_path / "w.safetensors")
    torch.save({"model": tensors, "epoch": 3}, tmp_path / "w.pkl")
    for loaded in (load_state_dict(tmp_path / "w.safetensors"),
                   load_state_dict(tmp_path / "w.pkl", container_keys=("model",))):
        assert set(loaded) == set(tensors)
        assert torch.equal(loaded["conv.weight"], tensors["conv.weight"])


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/sharpfu-pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weight": Payload()}, handle, protocol=2)
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        load_state_dict(path)
    assert not os.path.exists("/tmp/sharpfu-pwned")


@pytest.mark.parametrize("name, content", [("w.onnx", b"x"), ("w.safetensors", b"garbage")])
def test_other_files_are_refused_with_a_reason(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(WeightsError):
        load_state_dict(tmp_path / name)


def test_a_checkpoint_without_a_state_dict_is_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="state dict"):
        load_state_dict(tmp_path / "list.pt")
