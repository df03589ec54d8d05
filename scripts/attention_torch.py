"""PyTorch reference values for nabla's attention tests (tests/suite/attention.rs).

Writes tests/data/attention.safetensors: inputs, parameters, masks (as 0/1 floats), outputs
and the gradients of sum(output * cotangent), all float64. Run from the repository root with
a Python that has torch:  python scripts/attention_torch.py
"""
import json
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
out = {}


def put(name, t):
    out[name] = t.detach().to(torch.float64).contiguous()


def grads(prefix, y, wrt):
    cot = torch.randn_like(y)
    put(prefix + "cotangent", cot)
    gs = torch.autograd.grad((y * cot).sum(), [t for _, t in wrt])
    for (n, _), g in zip(wrt, gs):
        put(prefix + "grad." + n, g)


# 1. SDPA, 4-D, boolean mask (True = may attend), every row keeps at least one key.
q = torch.randn(2, 3, 4, 5, requires_grad=True)
k = torch.randn(2, 3, 6, 5, requires_grad=True)
v = torch.randn(2, 3, 6, 7, requires_grad=True)
allowed = torch.rand(4, 6) > 0.4
allowed[:, 0] = True
y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
for n, t in [("q", q), ("k", k), ("v", v)]:
    put("sdpa1." + n, t)
put("sdpa1.allowed", allowed.double())
put("sdpa1.output", y)
grads("sdpa1.", y, [("q", q), ("k", k), ("v", v)])

# 2. SDPA, causal, custom scale, L != S.
q = torch.randn(2, 4, 3, requires_grad=True)
k = torch.randn(2, 6, 3, requires_grad=True)
v = torch.randn(2, 6, 2, requires_grad=True)
y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
for n, t in [("q", q), ("k", k), ("v", v)]:
    put("sdpa2." + n, t)
put("sdpa2.output", y)
grads("sdpa2.", y, [("q", q), ("k", k), ("v", v)])

# 3. MultiheadAttention, time first, key padding and a boolean attn_mask (True = blocked).
mha = torch.nn.MultiheadAttention(8, 2)
with torch.no_grad():
    mha.in_proj_bias.normal_()
    mha.out_proj.bias.normal_()
L, S, N = 4, 5, 3
query = torch.randn(L, N, 8, requires_grad=True)
key = torch.randn(S, N, 8, requires_grad=True)
value = torch.randn(S, N, 8, requires_grad=True)
pad = torch.zeros(N, S, dtype=torch.bool)
pad[0, 4] = True
pad[2, 3:] = True
blocked = torch.rand(L, S) > 0.7
blocked[:, 0] = False
y, w = mha(query, key, value, key_padding_mask=pad, attn_mask=blocked)
for n, p in mha.named_parameters():
    put("mha1.param." + n, p)
for n, t in [("query", query), ("key", key), ("value", value)]:
    put("mha1." + n, t)
put("mha1.pad", pad.double())
put("mha1.blocked", blocked.double())
put("mha1.output", y)
put("mha1.weights", w)
params = list(mha.named_parameters())
grads("mha1.", y, [("query", query), ("key", key), ("value", value)] + [("param." + n, p) for n, p in params])

# 4. MultiheadAttention, batch first, kdim/vdim, a float attn_mask per batch and head.
mha = torch.nn.MultiheadAttention(6, 3, kdim=4, vdim=5, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.normal_()
    mha.out_proj.bias.normal_()
N, L, S = 2, 3, 4
query = torch.randn(N, L, 6, requires_grad=True)
key = torch.randn(N, S, 4, requires_grad=True)
value = torch.randn(N, S, 5, requires_grad=True)
additive = torch.randn(N * 3, L, S)
y, w = mha(query, key, value, attn_mask=additive)
for n, p in mha.named_parameters():
    put("mha2.param." + n, p)
for n, t in [("query", query), ("key", key), ("value", value)]:
    put("mha2." + n, t)
put("mha2.additive", additive)
put("mha2.output", y)
put("mha2.weights", w)
params = list(mha.named_parameters())
grads("mha2.", y, [("query", query), ("key", key), ("value", value)] + [("param." + n, p) for n, p in params])

# safetensors: 8-byte header length, JSON header, raw little-endian data.
header, blobs, offset = {"__metadata__": {"source": f"torch {torch.__version__}"}}, [], 0
for name in sorted(out):
    b = struct.pack(f"<{out[name].numel()}d", *out[name].flatten().tolist())
    header[name] = {"dtype": "F64", "shape": list(out[name].shape), "data_offsets": [offset, offset + len(b)]}
    blobs.append(b)
    offset += len(b)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open("tests/data/attention.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(f"wrote {len(out)} tensors")
