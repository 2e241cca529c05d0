"""Speed work, kept apart from the textbook code: a faster transposed convolution for the CPU,
the allocator setting and the optimiser choice that ``fit`` uses.

Nothing here changes a result beyond float rounding. ``models.py`` and ``train.py`` read as the
course teaches them (``nn.ConvTranspose2d``, ``torch.optim.Adam``); they call in here where it
pays, and ``print(model)`` shows ``FastConvTranspose2d`` where the fast layer runs.
``benchmarks/bench_training.py`` measures each piece against plain PyTorch.
"""

from __future__ import annotations

import ctypes
import functools
import platform

import torch
from torch import nn


class ShiftedPatchSum(torch.autograd.Function):
    """A transposed convolution (stride s, kernel k a multiple of s, no padding) on the CPU, in
    channels-last memory, as one matrix multiply plus q² shifted adds (q = k / s).

    Output row ``y = s·i + k_y`` with ``k_y = s·a + p`` is ``s·(i + a) + p``: the patch of input
    pixel ``i`` at tap block ``a`` lands ``a`` blocks further on, at phase ``p``. So the matrix
    multiply ``x[pixel, :] @ W`` makes every patch at once, laid out ``(a, p, b, p', C_out)``,
    and the output sums q² shifted slices of them. The backward gathers the same windows of the
    output gradient (one strided copy) and needs two more large matrix multiplies.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        n, c_in, h, w = x.shape
        _, c_out, kh, kw = weight.shape
        (sh, sw), qh, qw = stride, kh // stride[0], kw // stride[1]
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c_in)  # free for channels-last x
        wmat = weight.view(c_in, c_out, qh, sh, qw, sw).permute(0, 2, 3, 4, 5, 1).reshape(c_in, -1)
        patches = (rows @ wmat).view(n, h, w, qh, sh, qw, sw, c_out)
        out = x.new_empty(n, h + qh - 1, sh, w + qw - 1, sw, c_out)
        out.copy_(bias.view(1, 1, 1, 1, 1, -1) if bias is not None else x.new_zeros(()))
        # out[n, i + a, p, j + b, p', c] += patches[n, i, j, a, p, b, p', c]
        for a in range(qh):
            for b in range(qw):
                out[:, a:a + h, :, b:b + w].add_(patches[:, :, :, a, :, b].transpose(2, 3))
        ctx.save_for_backward(rows, wmat)
        ctx.shape = (n, c_in, h, w, c_out, kh, kw, sh, sw, qh, qw, bias is not None)
        return out.view(n, (h + qh - 1) * sh, (w + qw - 1) * sw, c_out).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        rows, wmat = ctx.saved_tensors
        n, c_in, h, w, c_out, kh, kw, sh, sw, qh, qw, has_bias = ctx.shape
        g = grad.permute(0, 2, 3, 1).contiguous()  # (n, H, W, C_out): free when channels-last
        sn, sy, sx, _ = g.stride()
        windows = g.as_strided((n, h, w, qh, sh, qw, sw, c_out),
                               (sn, sh * sy, sw * sx, sh * sy, sy, sw * sx, sx, 1))
        d_patches = windows.reshape(n * h * w, -1)  # one copy: every window, laid out like patches
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (d_patches @ wmat.t()).view(n, h, w, c_in).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            dw = (rows.t() @ d_patches).view(c_in, qh, sh, qw, sw, c_out)
            dw = dw.permute(0, 5, 1, 2, 3, 4).reshape(c_in, c_out, kh, kw)
        if has_bias and ctx.needs_input_grad[2]:
            db = g.sum((0, 1, 2))
        return dx, dw, db, None


class FastConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` with the same parameters and results, faster on the CPU.

    A transposed convolution scatters ``x[n, :, i, j] @ W`` (a ``C_out × k × k`` patch per input
    pixel) onto the output at ``(i·s, j·s)`` and sums where patches overlap. Here that is one
    large matrix multiply and a sum of shifted slices (``ShiftedPatchSum``), with the output in
    channels-last memory so the next layer reads its pixels as matrix rows without a copy; a
    one-pixel input needs no sum at all (the layer is then exactly one matrix multiply).
    PyTorch's CPU kernel runs these shapes at a fraction of the machine's matrix-multiply speed
    (see ``benchmarks/bench_training.py``). Kernels that are not a multiple of the stride,
    padding, groups, dilation, other devices and dtypes use the torch kernel.
    """

    @classmethod
    def like(cls, layer: nn.ConvTranspose2d) -> FastConvTranspose2d:
        """A fast layer that shares ``layer``'s weight and bias (no new random draws)."""
        fast = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                   layer.padding, layer.output_padding, layer.groups, layer.bias is not None,
                   layer.dilation, layer.padding_mode, device="meta")
        fast.weight, fast.bias = layer.weight, layer.bias
        return fast

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if (x.device.type != "cpu" or x.dtype != torch.float32 or output_size is not None
                or x.dim() != 4 or self.groups != 1 or self.padding != (0, 0)
                or self.output_padding != (0, 0) or self.dilation != (1, 1)
                or kh % sh or kw % sw):
            return super().forward(x, output_size)
        n, c_in, h, w = x.shape
        if h == w == 1:  # every patch lands on its own output: one matrix multiply, no sum
            out = (x.view(n, c_in) @ self.weight.view(c_in, -1)).view(n, -1, kh, kw)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        return ShiftedPatchSum.apply(x, self.weight, self.bias, (sh, sw))


def speed_up(model: nn.Module) -> nn.Module:
    """Swap every ``nn.ConvTranspose2d`` in ``model`` for a ``FastConvTranspose2d`` sharing its
    parameters, in place; the state_dict keys stay the same, so checkpoints load either way."""
    for name, layer in list(model.named_modules()):
        if type(layer) is nn.ConvTranspose2d:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FastConvTranspose2d.like(layer))
    return model


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and keep freed memory for reuse.

    By default glibc maps a block over 128 KiB fresh from the kernel and returns it when freed
    (it raises that threshold as blocks are freed, but never above 32 MiB), so each training step
    pays a page fault per 4 KiB of every large buffer it allocates again: a tenth of a
    ``ConvVAE`` epoch here. After this call freed memory stays with the process (up to 1 GiB)
    for the next step. Linux with glibc only; returns whether the setting took.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)
                and libc.mallopt(m_trim_threshold, 1 << 30))


def prepare(device: torch.device) -> None:
    """Speed settings for training on ``device``: on the CPU, ``keep_freed_memory()``."""
    if device.type == "cpu":
        keep_freed_memory()


def adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr=lr)``, with the fused kernel (one kernel for all
    parameters, same arithmetic) where torch has one: CPU and CUDA."""
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))
