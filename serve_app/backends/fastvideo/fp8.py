"""FP8 linears for the DiT (the `fast` speed profile): lossy, so never on by default.

Each linear of the DiT blocks keeps its weight in float8 e4m3 with one scale per output channel, quantizes
its input with one scale per token when it runs, and multiplies with `torch._scaled_mm` (FP8 tensor cores
on Ada, Hopper and Blackwell). Row-wise scales keep an outlier token or channel from costing the others
their precision. Under torch.compile the input's quantization fuses into the kernel before it.
FastVideo's `ReplicatedLinear` returns `(output, bias)`; a replacement keeps whichever contract it replaced.
Imports torch only.
"""

from __future__ import annotations

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) -> (M, K) e4m3 and (M, 1) fp32 scales with x ~= q * scale."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


class Fp8Linear(nn.Module):
    """y = x W^T + b with W and x in e4m3 (row-wise scales), accumulated in fp32, written in x's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, returns_tuple: bool):
        super().__init__()
        q, scale = quantize_rows(weight.detach())
        self.register_buffer("weight_fp8", q)  # (out, in); .t() is the column-major operand _scaled_mm wants
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        # row-wise scaled FP8 matmuls write bf16 only: the bias is kept in that dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))
        self.returns_tuple = returns_tuple
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor):
        rows = x.reshape(-1, self.in_features)
        q, scale = quantize_rows(rows)
        y = torch._scaled_mm(q, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, bias=self.bias,
                             out_dtype=torch.bfloat16).to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return (y, None) if self.returns_tuple else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3 row-wise"


def _linear_parts(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, bool] | None:
    """(weight, bias, returns_tuple) of a linear this module can replace, or None."""
    if type(module).__name__ == "ReplicatedLinear":
        return None if getattr(module, "skip_bias_add", False) else (module.weight, getattr(module, "bias", None), True)
    if isinstance(module, nn.Linear):
        return module.weight, module.bias, False
    return None


def convert_linears(root: nn.Module) -> dict:
    """Replace every linear under `root` whose sizes FP8 matmuls take (multiples of 16); returns the counts."""
    done = skipped = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            parts = _linear_parts(child)
            if parts is None:
                continue
            weight, bias, returns_tuple = parts
            if weight.dim() != 2 or weight.shape[0] % 16 or weight.shape[1] % 16:
                skipped += 1
                continue
            setattr(parent, name, Fp8Linear(weight, bias, returns_tuple).to(weight.device))
            done += 1
    return {"fp8_linears": done, "fp8_skipped": skipped}


def fp8_unavailable(device: str) -> str | None:
    """Why FP8 matmuls cannot run on `device` with this torch (None: they can), found by running one."""
    try:
        x = torch.randn(32, 64, device=device, dtype=torch.bfloat16)
        layer = Fp8Linear(torch.randn(32, 64, device=device, dtype=torch.bfloat16),
                          torch.zeros(32, device=device, dtype=torch.bfloat16), returns_tuple=False)
        layer(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    except (RuntimeError, NotImplementedError, TypeError, AssertionError) as exc:  # a CPU-only torch: Assertion
        text = str(exc).strip()
        return text.splitlines()[0][:200] if text else type(exc).__name__
    return None
