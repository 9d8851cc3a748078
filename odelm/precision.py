"""One arithmetic for every entry point (train, eval, compare, benchmarks, the GPU check).

float32 everywhere, and float32 matrix products at full float32 precision ("highest"): no TF32 on
GPUs. TF32 keeps 10 mantissa bits, a relative rounding of about 1e-3 per product, the size of the
solver tolerances odelm uses (rtol = 1e-3): under it an adaptive solver's error estimate, the
loop ≡ Euler identity and adjoint-vs-direct gradients would be compared against rounding noise of
their own size, and a CPU and a GPU run would differ at that level. float32 proper rounds at
eps = 1.2e-7, so tolerances down to about 1e-5 (relative) mean what they say on either device.
"""
from __future__ import annotations

import torch

DTYPE = torch.float32
MATMUL_PRECISION = "highest"


def configure_arithmetic() -> dict:
    """Sets float32 as the default dtype and full-precision float32 matrix products (TF32 off for
    matmuls and cuDNN); returns `arithmetic()`. Every entry point calls it first."""
    torch.set_default_dtype(DTYPE)
    torch.set_float32_matmul_precision(MATMUL_PRECISION)  # also turns torch.backends.cuda.matmul.allow_tf32 off
    torch.backends.cudnn.allow_tf32 = False
    return arithmetic()


def arithmetic() -> dict:
    """The arithmetic in force, for metrics.json."""
    return {
        "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }
