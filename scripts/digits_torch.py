"""PyTorch reference for examples/digits.rs: the same MLP, loss, optimiser, batch size,
epochs and train/test split (read from the example's test_indices.txt).

usage: python scripts/digits_torch.py data/digits.csv.gz target/nabla-examples/digits/test_indices.txt [seed]
Not run by CI; it needs torch (see ../shared/bench/WORKLOADS.md for a virtualenv)."""
import gzip, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

csv_path, split_path = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.manual_seed(seed)
rows = [list(map(float, line.split(","))) for line in gzip.open(csv_path, "rt").read().splitlines()]
data = torch.tensor(rows)
x, y = data[:, :64] / 16.0, data[:, 64].long()
test = torch.tensor([int(i) for i in open(split_path).read().split()])
mask = torch.ones(len(y), dtype=torch.bool); mask[test] = False
train_x, train_y, test_x, test_y = x[mask], y[mask], x[test], y[test]
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for epoch in range(1, 31):
    order = torch.randperm(len(train_y))
    for k in range(0, len(order), 32):
        idx = order[k:k + 32]
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    acc = (model(test_x).argmax(1) == test_y).float().mean().item()
print(f"torch seed {seed}: test accuracy {100 * acc:.2f}%")
