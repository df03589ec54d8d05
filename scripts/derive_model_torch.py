"""The PyTorch twin of the model in tests/suite/derive.rs, for #[derive(Module)]'s names.

usage: python scripts/derive_model_torch.py tests/data
Prints the model's state_dict keys (the test's expected list) and writes two files:
derive_model.safetensors (its state_dict, as PyTorch saves it: float32 and one int64
buffer) and derive_model_io.safetensors (an input and the eval-mode output). Not run by
CI; it needs torch and safetensors."""
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)
        self.rnn = nn.LSTM(4, 5, batch_first=True)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.layers = nn.ModuleList([nn.Linear(5, 6), nn.Linear(6, 2)])
        self.head = nn.Linear(2, 2)
        self.dropout = nn.Dropout(0.5)
        self.gate = nn.Parameter(torch.linspace(0.5, 1.5, 2))
        self.register_buffer("scale", torch.full((2,), 0.25))
        self.register_buffer("steps", torch.tensor(7))

    def forward(self, x):  # x: (N, 3, L)
        h = self.encoder.conv(x).transpose(1, 2)
        out, _ = self.encoder.rnn(h)
        y = out[:, -1]
        for layer in self.layers:
            y = torch.tanh(layer(y))
        return self.head(self.dropout(y)) * self.gate * self.scale


def main(out_dir):
    torch.manual_seed(0)
    model = Model().eval()
    print(list(model.state_dict().keys()))
    print([name for name, _ in model.named_parameters()])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/derive_model.safetensors")
    x = torch.randn(2, 3, 7)
    with torch.no_grad():
        y = model(x)
    save_file({"x": x, "y": y}, f"{out_dir}/derive_model_io.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
