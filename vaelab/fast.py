"""Speed work, kept apart from the textbook code: a faster transposed convolution for the CPU,
the allocator setting, the optimiser choice and the thread count that ``fit`` uses.

Nothing here changes a result beyond float rounding. ``models.py`` and ``train.py`` read as the
course teaches them (``nn.ConvTranspose2d``, ``torch.optim.Adam``); they call in here where it
pays, and ``print(model)`` shows ``FastConvTranspose2d`` where the fast layer runs.
``benchmarks/bench_training.py`` measures each piece against plain PyTorch.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import time
from contextlib import contextmanager

import torch
from torch import nn

from . import losses


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


class BernoulliNLL(torch.autograd.Function):
    """``losses.bernoulli_nll_per_image`` (binary cross-entropy on logits, summed per image),
    about twice as fast forward and backward together on the CPU (``benchmarks/bench_losses.py``
    times both, at a batch of 128 MNIST images and at notebook 07's batched sweep).

    −log p(x | l) = softplus(l) − x·l, and softplus(l) = max(l, 0) + log(1 + e^(−|l|)): e^(−|l|)
    never overflows. torch's own kernel computes the last term with ``log1p``, which ran about
    7 times as long as ``log`` here; ``log(1 + t)`` differs from it by under 1e-7 per pixel
    (t ≤ 1). The gradient is σ(l) − x, written out rather than traced through five operations.
    """

    @staticmethod
    def forward(ctx, logits, x):
        soft = torch.exp(-logits.abs()).add_(1).log_()  # log(1 + e^(−|l|))
        per_pixel = logits.clamp_min(0).sub_(x * logits).add_(soft)
        ctx.save_for_backward(logits, x)
        return per_pixel.flatten(1).sum(1)

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        per_image = grad.view(-1, *([1] * (logits.dim() - 1)))
        return torch.sigmoid(logits).sub_(x).mul_(per_image), None


def bernoulli_nll_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``losses.bernoulli_nll_per_image(logits, x)`` for float32 CPU tensors of one shape
    ``(N, ...)`` through ``BernoulliNLL``; anything else through the textbook function."""
    if (logits.device.type == "cpu" and logits.dtype == x.dtype == torch.float32
            and logits.shape == x.shape and logits.dim() >= 2 and not x.requires_grad):
        return BernoulliNLL.apply(logits, x)
    return losses.bernoulli_nll_per_image(logits, x)


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


def usable_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask where the system has
    one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class ThreadTuner:
    """Picks torch's CPU thread count while a model trains, by timing the training steps.

    torch runs each operation on one thread per core (OpenMP). At the end of each operation the
    threads wait for each other, and a waiting thread spins on its core for a while instead of
    sleeping. That is the fastest on a machine with nothing else to do. When another program
    keeps a core busy (a browser drawing a page, a second notebook), one of torch's threads
    has to share a core with it: every operation then waits for the thread that lost its core,
    and the spinning takes CPU time that the late thread needed. On a 2-core machine a
    training step can take several times longer; with one thread fewer it runs at full speed.

    So the tuner measures rather than guesses. ``step(seconds)`` is told how long each step
    took; the pace of a stretch of steps is their mean time with the longest left out (an epoch's
    end, with its evaluation, falls into one step). Once it has timed ``seconds`` of steps (and
    at least ``steps`` steps), it tries one thread fewer for as long and keeps the new count if
    its pace is at least ``gain`` faster, else goes back. It tries again every ``every``
    seconds, in the other direction after a failed try (on 2 cores: 2 → 1, then 1 → 2 while the
    competitor runs), so it follows a machine that gets busy or quiet again. A try at half the
    pace or worse ends after two steps, and the next try waits at least ``1 / share`` times as
    long as the last one took, so trying costs at most about ``share`` of the training time.
    At the full count, each failed try in a row doubles the wait (up to ``longest`` seconds): on
    a quiet machine trying soon costs almost nothing. (With fewer threads it keeps trying at the
    first rate: staying there when the machine is quiet again would cost the most.) What brings
    the next try forward is the machine changing: when a stretch of steps at the current count
    takes more than ``1 + alarm`` times the best pace seen at it (a program started), the tuner
    tries at once. It uses 1 to ``most`` threads.

    The thread count changes only the order of float additions (the results stay within
    rounding), never the batches or the random draws. (Letting waiting threads sleep at once,
    ``OMP_WAIT_POLICY=PASSIVE``, helps no more on a busy machine and slows small models on a
    quiet one; and it only takes effect if set before torch is first imported.)
    """

    def __init__(self, most: int, *, steps: int = 3, seconds: float = 0.1, every: float = 2.0,
                 gain: float = 0.05, share: float = 0.05, longest: float = 60.0,
                 alarm: float = 0.5, clock=time.perf_counter):
        self.most, self.steps, self.seconds = most, steps, seconds
        self.every, self.gain, self.share, self.clock = every, gain, share, clock
        self.longest, self.alarm = longest, alarm
        self.failures = 0  # failed tries in a row: each doubles the wait for the next
        self.best: float | None = None  # the best pace at the current count since it was set
        self.recent: list[float] = []  # the latest steps at the current count (`seconds` of them)
        self.trial: list[float] | None = None  # the steps at the count on trial
        self.before = self.threads = most  # before: the count to go back to after a failed try
        self.direction = -1  # the next try: one thread fewer (-1) or more (+1)
        self.baseline = self.started = self.next_trial = 0.0
        self.switches = 0  # thread count changes, tries included
        self.last_step: float | None = None
        self.use(most)

    def use(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            self.switches += 1
        self.threads = threads

    def tick(self) -> None:
        """Call at the end of every training step: ``step`` with the time since the last call
        (the first call only starts the clock, so the first step, a warm-up, is not counted)."""
        now = self.clock()
        if self.last_step is not None:
            self.step(now - self.last_step)
        self.last_step = self.clock()

    @staticmethod
    def pace(times: list[float]) -> float:
        """Seconds per step: the mean of ``times`` without the longest."""
        return (sum(times) - max(times)) / (len(times) - 1) if len(times) > 1 else times[0]

    def enough(self, times: list[float]) -> bool:
        return len(times) >= self.steps and sum(times) >= self.seconds

    def step(self, seconds: float) -> None:
        """Record a training step of ``seconds`` at the current count; maybe change the count."""
        if self.trial is not None:
            self.trial.append(seconds)
            if len(self.trial) > 1 and self.pace(self.trial) > 2 * self.baseline:  # half the pace
                self.end_trial(faster=False)
            elif self.enough(self.trial):
                self.end_trial(self.pace(self.trial) < (1 - self.gain) * self.baseline)
            return
        self.recent.append(seconds)
        while len(self.recent) > self.steps and sum(self.recent[1:]) >= self.seconds:
            del self.recent[0]
        if not self.enough(self.recent):
            return
        pace = self.pace(self.recent)
        slowed = self.best is not None and pace > (1 + self.alarm) * self.best
        self.best = pace if self.best is None else min(self.best, pace)
        if slowed or self.clock() >= self.next_trial:
            if slowed:
                self.failures = 0  # the machine changed: back to trying often
            self.start_trial()

    def start_trial(self) -> None:
        threads = self.threads + self.direction
        if not 1 <= threads <= self.most:
            self.direction = -self.direction
            threads = self.threads + self.direction
            if not 1 <= threads <= self.most:
                return  # one thread and no other choice
        self.before, self.baseline = self.threads, self.pace(self.recent)
        self.trial, self.started = [], self.clock()
        self.use(threads)

    def end_trial(self, faster: bool) -> None:
        if faster:
            self.recent = self.trial  # and the next try goes the same way
            self.best, self.failures = self.pace(self.trial), 0
        else:
            self.use(self.before)
            self.direction = -self.direction
            self.best, self.failures = self.baseline, self.failures + 1  # the pace here now
        self.trial = None
        now = self.clock()
        wait = max(self.every, (now - self.started) / self.share)
        if self.threads == self.most:  # (below it, staying wrong costs the most: no backoff)
            wait = min(wait * 2 ** max(self.failures - 1, 0), max(self.longest, wait))
        self.next_trial = now + wait


tune_threads = True  # False: fit keeps torch's thread count (see ``tuned_threads``)


@contextmanager
def tuned_threads(optimizer: torch.optim.Optimizer, device: torch.device):
    """Within the block, a ``ThreadTuner`` times every ``optimizer.step()`` (a hook on the
    optimizer; the training loop is unchanged) and picks torch's thread count on the CPU, from
    1 to the smaller of torch's count and the cores this process may use. Afterwards torch's
    thread count is what it was before. Yields the tuner, or None where there is nothing to
    pick (another device, one thread or one core) or where ``vaelab.fast.tune_threads`` is
    False: set it so to keep torch's count, e.g. for runs that repeat bit for bit (a
    ``ConvVAE``'s weights differ in the last bits between thread counts)."""
    before = torch.get_num_threads()
    most = min(before, usable_cores())
    if not tune_threads or device.type != "cpu" or most < 2:
        yield None
        return
    tuner = ThreadTuner(most)
    handle = optimizer.register_step_post_hook(lambda *_: tuner.tick())
    try:
        yield tuner
    finally:
        handle.remove()
        torch.set_num_threads(before)
