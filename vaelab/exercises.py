"""Self-checking exercises: ``check.<name>(your_function)`` prints one line and returns True/False.

    from vaelab.exercises import check
    check.reparameterize(reparameterize)       # fn(mu, logvar) -> z, (N, L)
    check.gaussian_kl(gaussian_kl)             # fn(mu, logvar) -> KL per image, (N,)
    check.bernoulli_reconstruction(rec)        # fn(logits, x) -> -log p(x|z) per image, (N,)
    check.vae_loss(vae_loss)                   # fn(logits, x, mu, logvar, beta) -> scalar
    check.donutness(donutness)                 # fn(x (N, 1, 28, 28)) -> (N,)
    check.conv_encoder_shapes(shapes)          # fn(size) -> [(1, C, H, W), ...] per encoder conv
    check.conv_decoder_shapes(shapes)          # fn() -> [(1, C, H, W), ...] per decoder conv
    check.mig_from_mi(mig_from_mi)             # fn(mi (L, K), entropy (K,)) -> MIG, a number

Each checker runs the student's function on inputs whose answers the tested vaelab functions
give, compares with the answer and with known wrong variants (KL with the wrong sign, log σ
for log σ², a sigmoid too many, a mean where a sum belongs, ...), and names the mistake with a
hint, never the solution. A checker never raises: a stub that still says
``raise NotImplementedError`` gets "not written yet", any other error one line naming it.
Its result is true only when the function passed, so an nbgrader test cell
``assert check.gaussian_kl(gaussian_kl)`` prints the line and fails on a wrong answer.

While the student's function runs, the checker also makes sure that:

* it writes the answer itself: a function that calls vaelab's own answer (any function of
  ``vaelab.losses``, ``vaelab.anchor`` or ``vaelab.metrics``, or ``models.reparameterize``)
  fails, and the line names the function it called. Torch and numpy are fine, and so are the
  given maps ``anchor.donut_map`` and ``anchor.stick_map``; an exercise may forbid more: the
  reconstruction term refuses torch's ``binary_cross_entropy_with_logits`` under any of its
  names (also through ``nn.BCEWithLogitsLoss``, a Bernoulli's ``log_prob``,
  ``multilabel_soft_margin_loss``, any ``cross_entropy`` call, which with soft targets over the
  two logits [0, ℓ] is the same loss, and anything in torch's Binomial or Multinomial), the KL
  refuses ``torch.distributions``' closed form, the reparameterisation anything in
  ``torch.distributions`` (its ``rsample`` is the answer in one call), and the
  conv-shape exercises anything that slides a window over a tensor or array to get the sizes:
  building or running a ``ConvVAE`` or any conv layer, the conv and pooling functions
  (``F.conv2d``, ``F.avg_pool2d``, ``F.max_pool2d``, ``torch.ops.aten.convolution``, ...),
  ``Tensor.unfold``, ``F.unfold``, numpy's ``sliding_window_view``, ``convolve`` and
  ``correlate``, ``scipy.signal``'s ``convolve``, ``correlate``, ``fftconvolve``,
  ``oaconvolve``, ``convolve2d`` and ``correlate2d``, ``scipy.ndimage``'s filters,
  scikit-learn's patch extraction, and any Python function inside torch whose name says conv,
  pool, fold or unfold (its shape helpers: the meta device's, TorchScript's, NNAPI's; and torch.fx's
  ``calculate_out_dimension``). The sizes are worked out from kernel and stride; printing the
  model to read them is fine. Another library's window function is not caught.
  A ``sys.setprofile`` hook watches the calls during the student's call only (the checker's own
  reference answers are computed outside it), in the calling thread and in threads started
  during the call (``threading.setprofile``); while another profiler runs (``%prun``) that
  hook stands aside. During the call, too, vaelab's answer functions run a tripwire instead of
  their code (``_tripwires``), which catches a call from any thread, also one started before
  the check; a call to ``sys.setprofile`` during the student's call fails too (it would switch
  the hook off). Not caught: work done in a thread started before the check (torch's own
  functions, except ``torch.distributions.kl``'s in the KL exercise, which trip too; or a copy
  of an answer's code: only the functions themselves trip there),
  another process, torch's ops called from C with its function hooks switched off (the
  private ``torch._C.DisableTorchFunction``), TorchScript (a traced or scripted
  function runs its graph in C++, past the hook and the tripwires), vaelab's source copied
  and run with ``exec`` (or loaded anew with ``importlib``, in a thread started before the
  check), or a function object built on a renamed copy of an answer's code
  object (``types.FunctionType``). The reparameterisation's statistical tests (for noise that
  is not the first draw of torch's or numpy's global normal generator) look for linear
  correlation between rows at any distance (6.5 standard errors over 10,000 rows: below
  about 0.065 between neighbouring rows it is not seen, and the floor rises with distance:
  about 0.09 for rows 5,000 apart) and between latent dimensions (below about 0.05 it is not
  seen), not for other dependence,
  and cannot tell from a normal a noise within about 0.05 excess kurtosis of it (a
  standardised sum of many uniforms), a scale within about 1 %, or a mean within about
  0.015 σ; nor do they see a clamp of logvar beyond about ±14.5;
* ``exit()`` / ``sys.exit()`` inside it is a failure, not the end of the kernel (Ctrl-C still
  stops the cell: KeyboardInterrupt passes through);
* each call ends within ``TIME_LIMIT_S`` seconds (an endless loop is stopped and named). The
  bound uses SIGALRM, so it holds only in the main thread on platforms that have it (Linux,
  macOS; not Windows), and it interrupts Python code, not one long torch operation.
"""

from __future__ import annotations

import contextlib
import copy
import decimal
import functools
import importlib.util
import inspect
import math
import numbers
import os
import random
import re
import signal
import sys
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import anchor, batched, fast, losses, metrics, models
from .models import ConvVAE

__all__ = ["check", "Checks", "TIME_LIMIT_S"]

PASSED, NOT_YET, FAILED = "✅", "✏️", "❌"

# where a reconstruction hint points instead of naming the one-call answer
IDENTITIES = "the hint of notebook 01's exercise has the identities"

TIME_LIMIT_S = 20.0
"""Longest one call of the student's function may run, in seconds (main thread, SIGALRM)."""

# vaelab's own answers: every function of these modules (this one included: the checkers'
# reference computations), and the reparameterisation ...
ANSWER_FILES = frozenset({*(m.__file__ for m in (losses, anchor, metrics)), __file__})
ANSWER_FUNCTIONS = (models.reparameterize,  # ... fast's Bernoulli NLL, and the batched pass
                    fast.bernoulli_nll_per_image, fast.BernoulliNLL.forward,
                    fast.BernoulliNLL.backward, batched.forward)
ANSWER_CODES = frozenset(fn.__code__ for fn in ANSWER_FUNCTIONS)
# ... but not the maps that define donutness: they are given (the notebook's solution uses them)
GIVEN_CODES = frozenset({anchor.donut_map.__code__, anchor.stick_map.__code__})


class _Problem(Exception):
    """What went wrong, in one line for the student."""


class _NotWritten(Exception):
    """The student's function still raises NotImplementedError."""


def _first_line(e: BaseException, limit: int = 120) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _describe(obj) -> str:
    """``None``, ``an int``, ``a list``: what the student passed or returned."""
    if obj is None:
        return "None"
    name = type(obj).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _hint(e: Exception, signature: str) -> str:
    msg = str(e)
    if isinstance(e, NameError):
        return "is every name defined? Run the notebook's first cell (the imports) and try again"
    if "support" in msg and "Boolean" in msg:
        return ("torch's Bernoulli checks by default that pixels are 0 or 1, and these images "
                "are grey — write the log-likelihood from the logits yourself (where an "
                "exercise allows torch's Bernoulli, as the β-VAE loss does, "
                "validate_args=False lifts that check)")
    if "between 0 and 1" in msg:
        return ("binary_cross_entropy wants probabilities, and the decoder gives logits: work "
                f"with the logits directly ({IDENTITIES})")
    if isinstance(e, RuntimeError) and any(w in msg for w in ("size", "shape", "dimension")):
        return "tensor shapes don't line up — print the shapes and check which dim you reduce over"
    if isinstance(e, TypeError):
        return f"the checker calls {signature}; check the arguments and the torch calls"
    return "read the message, fix the code and run the cell again"


class _TimeUp(BaseException):
    """SIGALRM: the student's function ran past TIME_LIMIT_S (a BaseException, so that an
    ``except Exception`` in the student's code does not swallow it)."""


# torch's closed-form KL answers the KL exercise in one call (gaussian_kl forbids it; the
# other exercises may use it); so does its binary cross-entropy on logits (used directly, or
# through nn.BCEWithLogitsLoss or a Bernoulli's log_prob) the reconstruction exercise
TORCH_BCE_LOGITS = frozenset({
    inspect.unwrap(F.binary_cross_entropy_with_logits).__code__,
    inspect.unwrap(F.multilabel_soft_margin_loss).__code__,  # the same loss, a mean over pixels
    inspect.unwrap(F.cross_entropy).__code__,  # two classes [0, ℓ], soft targets
    # and a Bernoulli written as a Binomial with one trial or a Multinomial over [0, ℓ]
    torch.distributions.binomial.__file__, torch.distributions.multinomial.__file__})
# ... and under these names anywhere in torch: its builtins, torch.ops, and the Python
# decompositions and references of torch._decomp and torch._refs
TORCH_BCE_OPS = frozenset({"binary_cross_entropy_with_logits", "multilabel_soft_margin_loss",
                           "cross_entropy", "cross_entropy_loss"})
NO_TORCH_BCE = ("torch's binary cross-entropy on logits (binary_cross_entropy_with_logits; "
                "multilabel_soft_margin_loss, its mean over pixels; cross_entropy, which with "
                "soft targets over the two logits [0, ℓ] is the same loss; a Binomial or "
                "Multinomial) is the answer in one call, so this exercise refuses them: write "
                "the term yourself from the identities in the hint")
TORCH_KL_FILE = torch.distributions.kl.__file__
# the shape exercises are worked out by hand: building or running vaelab's ConvVAE (or any conv
# layer) answers them ...
VAELAB_MODELS = frozenset({models.__file__, fast.__file__, nn.modules.conv.__file__,
                           # TorchScript's shape functions (conv2d, pooling_output_shape) and
                           # torch.fx's calculate_out_dimension, found without importing them (the
                           # import warns that torch.jit is deprecated)
                           importlib.util.find_spec("torch.jit._shape_functions").origin,
                           importlib.util.find_spec(
                               "torch.fx.experimental.graph_gradual_typechecker").origin})
# ... and so does any op that slides a window over a tensor: conv, correlation and pooling
# builtins (F.conv2d, F.avg_pool2d, torch.max_pool2d, im2col, numpy's C correlate, ...),
# Tensor.unfold, and fold / col2im (whose errors count the sliding blocks) ...
WINDOW_OPS = re.compile(r"conv(?!ert)|correlate|pool|fold|im2col|col2im|stft")
WINDOW_LIBRARIES = frozenset({"torch", "numpy", "scipy", "sklearn"})  # whose builtins are read
# ... the same ops called through torch.ops (torch.ops.aten.convolution.default(...)): these
# Python objects run the op from their __call__ ...
TORCH_OP_CALLS = frozenset({torch._ops.OpOverload.__call__.__code__,
                            torch._ops.OpOverloadPacket.__call__.__code__})
# ... and numpy's and scipy.signal's window functions written in Python, watched where they
# start (fftconvolve's FFTs, for one, have C names that say nothing of windows)
NUMPY_WINDOWS = (np.lib.stride_tricks.sliding_window_view, np.convolve, np.correlate)
# names in scipy.signal (_window_codes imports it when needed)
SCIPY_WINDOWS = ("convolve", "correlate", "fftconvolve", "oaconvolve", "convolve2d",
                 "correlate2d", "correlation_lags")
SKLEARN_WINDOWS = ("_extract_patches", "extract_patches_2d", "_compute_n_patches")  # in
# sklearn.feature_extraction.image: strided patches, and the count of them
NDIMAGE_WINDOWS = ("convolve", "correlate", "convolve1d", "correlate1d", "uniform_filter",
                   "uniform_filter1d", "maximum_filter", "maximum_filter1d", "minimum_filter",
                   "minimum_filter1d", "median_filter", "rank_filter", "percentile_filter",
                   "generic_filter", "generic_filter1d", "gaussian_filter",
                   "gaussian_filter1d")  # scipy.ndimage's sliding-window filters
TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# describing a layer runs none: print(model) shows kernel and stride
SHOWING = frozenset({"__repr__", "__str__", "extra_repr"})
# ... and its distributions' rsample() answers the reparameterisation exercise in one call, so
# that exercise refuses all of torch.distributions, and says so (ε drawn from a Normal(0, 1) is
# the formula written by hand, but refused all the same)
TORCH_DISTRIBUTIONS = os.path.dirname(torch.distributions.__file__) + os.sep
NO_DISTRIBUTIONS = ("draw ε with torch.randn_like(mu) (or torch.randn): torch.distributions is "
                    "off-limits in this exercise, since its rsample() is the answer in one call")


@functools.cache
def _window_codes() -> frozenset:
    """The code objects of ``NUMPY_WINDOWS``, ``SCIPY_WINDOWS``, ``NDIMAGE_WINDOWS`` and
    ``SKLEARN_WINDOWS`` (scipy's and scikit-learn's only where installed: imported on first use,
    outside the student's call)."""
    functions = list(NUMPY_WINDOWS)
    try:
        import sklearn.feature_extraction.image as patches
    except ImportError:
        pass
    else:
        functions += [getattr(patches, name) for name in SKLEARN_WINDOWS
                      if hasattr(patches, name)]
    try:
        import scipy.ndimage
        import scipy.signal
    except ImportError:
        pass
    else:
        functions += [getattr(scipy.signal, name) for name in SCIPY_WINDOWS
                      if hasattr(scipy.signal, name)]
        functions += [getattr(scipy.ndimage, name) for name in NDIMAGE_WINDOWS
                      if hasattr(scipy.ndimage, name)]
    codes = (getattr(inspect.unwrap(f), "__code__", None) for f in functions)
    return frozenset(code for code in codes if code is not None)


def _forbids(code, extra: frozenset) -> bool:
    """Whether ``extra`` (file paths, or code objects of single functions) forbids ``code``."""
    return code in extra or code.co_filename.startswith(
        tuple(e for e in extra if isinstance(e, str)))


def _is_answer(code, extra_files: frozenset = frozenset()) -> bool:
    """Whether running ``code`` means running vaelab's own answer to an exercise (or a
    function in ``extra_files``, files or code objects, which this exercise forbids too)."""
    if code in GIVEN_CODES or code.co_name.startswith("<") or code.co_name in SHOWING:
        return False  # <module>, <lambda>, <genexpr>; and repr(layer)
    if code.co_filename == __file__ and code.co_qualname.startswith(("_Watch.", "_time_limit",
                                                                      "_tripwires",
                                                                      "_TorchCalls.")):
        return False  # the checker's own watches and time limit, around the student's call
    return code in ANSWER_CODES or code.co_filename in ANSWER_FILES or _forbids(code, extra_files)


def _library(builtin) -> str:
    """``"torch"``, ``"numpy"``: the package a builtin function or method comes from."""
    module = (getattr(builtin, "__module__", None)  # Tensor.unfold has none: its Tensor's
              or type(getattr(builtin, "__self__", None)).__module__)
    return module.partition(".")[0]


def _torch_op_name(frame, event: str, arg) -> str | None:
    """The name of the torch builtin (``torch.binary_cross_entropy_with_logits``), ``torch.ops``
    op (``torch.ops.aten.binary_cross_entropy_with_logits.default``, without the overload) or
    Python function inside torch (a decomposition in ``torch._decomp``) that this profile event
    calls, else None."""
    if event == "c_call" and _library(arg) == "torch":
        return getattr(arg, "__name__", None)
    if event == "call" and frame.f_code in TORCH_OP_CALLS:
        return getattr(frame.f_locals.get("self"), "__name__", "").partition(".")[0] or None
    if event == "call" and frame.f_code.co_filename.startswith(TORCH_DIR):
        return frame.f_code.co_name
    return None


def _window_op(frame, event: str, arg, codes: frozenset) -> str | None:
    """``"torch's own conv2d"``, ``"scipy's own fftconvolve"`` if this profile event runs an op
    that slides a window over a tensor or array (conv, correlation, pooling, unfold; ``codes``:
    those written in Python, from ``_window_codes``), else None."""
    if event == "c_call":  # F.conv2d, F.avg_pool2d, Tensor.unfold are builtins
        library, name = _library(arg), getattr(arg, "__name__", "")
        if library not in WINDOW_LIBRARIES:  # str.casefold is no window op
            return None
    elif event == "call" and frame.f_code in TORCH_OP_CALLS:
        library = "torch"
        name = getattr(frame.f_locals.get("self"), "__name__", "")  # "convolution.default"
    elif event == "call" and frame.f_code in codes:  # np.convolve, scipy.signal.fftconvolve
        library = frame.f_globals.get("__name__", "").partition(".")[0]
        return f"{library}'s own {frame.f_code.co_name}"
    elif event == "call" and frame.f_code.co_filename == torch._meta_registrations.__file__:
        return (f"torch's meta-device shape rule {frame.f_code.co_name} (a layer or op run on "
                "the meta device)") if WINDOW_OPS.search(frame.f_code.co_name) else None
    elif event == "call" and frame.f_code.co_filename.startswith(TORCH_DIR):
        library, name = "torch", frame.f_code.co_name  # its Python shape helpers, e.g.
        # get_conv_pool_shape, pooling_output_shape, and F's Python wrappers
    else:
        return None
    return f"{library}'s own {name}" if WINDOW_OPS.search(name) else None


class _Watch:
    """Notes the first of vaelab's answer functions that is called inside the ``with`` block
    (a ``sys.setprofile`` hook, also given to threads started in the block; off while another
    profiler is installed). ``windows``: conv, pooling and unfold ops count as answers too.
    ``refusal``: what to say, instead of "write the formula yourself", when the function called
    is one in ``forbid``."""

    def __init__(self, forbid: frozenset = frozenset(), windows: bool = False,
                 refusal: str | None = None, ops: frozenset = frozenset()):
        self.called: str | None = None
        self.forbid = forbid
        self.ops = ops  # names of torch builtins and torch.ops this exercise forbids too
        self.windows = windows
        self.refusal = refusal
        self.forbidden = False  # whether the function called is one in forbid
        self._window_codes = _window_codes() if windows else frozenset()
        self._on = False
        self._threads_before = None

    def __enter__(self) -> _Watch:
        self._on = sys.getprofile() is None  # cProfile's can't be put back with setprofile
        if self._on:
            self._threads_before = threading.getprofile()
            threading.setprofile(self._on_event)  # threads started from here on
            sys.setprofile(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        if self._on:
            if sys.getprofile() != self._on_event and self.called is None:
                self.called = "sys.setprofile, which switches the checker's watch off"
            self._on = False  # threads still running drop the hook at their next event
            sys.setprofile(None)  # what was there before
            threading.setprofile(self._threads_before)

    def _on_event(self, frame, event: str, arg) -> None:
        if not self._on:  # a thread that outlived the student's call
            sys.setprofile(None)
            return
        if event == "c_call" and arg is sys.setprofile and self.called is None:
            self.called = "sys.setprofile, which switches the checker's watch off"
        if self.called is None and self.windows:
            self.called = _window_op(frame, event, arg, self._window_codes)
        if self.called is None and self.ops:
            name = _torch_op_name(frame, event, arg)
            if name in self.ops:
                self.called, self.forbidden = f"torch's own {name}", True
        if event == "call" and self.called is None and _is_answer(frame.f_code, self.forbid):
            code = frame.f_code
            mine = code.co_filename.startswith(os.path.dirname(models.__file__) + os.sep)
            if mine and code.co_qualname.startswith("torch."):  # a tripwire in torch's place
                self.called, self.forbidden = f"torch's own {code.co_qualname[6:]}", True
                return
            self.called = f"{'vaelab' if mine else 'torch'}'s own {code.co_qualname}"
            self.forbidden = _forbids(code, self.forbid)

    def verdict(self) -> None:
        """Raise the failure if the student's function called one of vaelab's answers."""
        if self.called and self.windows:
            raise _Problem(f"your function calls {self.called} — the exercise is to work the "
                           "sizes out from kernel and stride yourself, without building or "
                           "running a layer or sliding a window (printing the model to read "
                           "them is fine)")
        if self.called and self.forbidden and self.refusal:
            raise _Problem(f"your function calls {self.called} — {self.refusal}")
        if self.called:
            raise _Problem(f"your function calls {self.called} — the exercise is to write the "
                           "formula yourself")


class _AnswerCalled(Exception):
    """Raised inside the student's call by one of vaelab's answer functions, tripped."""


def _trip(*args, **kwargs):
    """The code every answer function runs while the student's function runs (its name is
    this code object's): note the call, whichever thread made it, and stop it. It runs with
    the globals of the function it stands in for, so it reaches this module by import."""
    import sys

    exercises = sys.modules["vaelab.exercises"]
    name = sys._getframe().f_code.co_qualname
    exercises._TRIPPED.append(name)
    owner = (f"torch's own {name.removeprefix('torch.')}" if name.startswith("torch.")
             else f"vaelab's own {name}")
    raise exercises._AnswerCalled(f"{owner} is off limits in this exercise")


_TRIPPED: list[str] = []  # names of the answer functions called while the tripwires were set


@functools.cache
def _answer_functions() -> tuple:
    """vaelab's answer functions that a tripwire can stand in for: the functions (and
    methods) defined in ``ANSWER_FILES``' modules but this one, and ``ANSWER_FUNCTIONS``;
    not the given maps, not closures."""
    found = {}
    for module in (losses, anchor, metrics):
        for obj in vars(module).values():
            members = vars(obj).values() if inspect.isclass(obj) else [obj]
            for member in members:
                fn = getattr(member, "__func__", member)  # staticmethod, classmethod
                code = getattr(fn, "__code__", None)
                if (inspect.isfunction(fn) and code.co_filename == module.__file__
                        and not fn.__closure__ and code not in GIVEN_CODES):
                    found[code] = fn
    for fn in ANSWER_FUNCTIONS:
        found[fn.__code__] = fn
    return tuple(found.values())


def _torch_functions(forbid: frozenset) -> tuple:
    """The Python functions of torch's modules that this exercise forbids (``forbid`` holds
    ``TORCH_KL_FILE``: all of ``torch.distributions.kl``, its registry's functions too)."""
    if TORCH_KL_FILE not in forbid:
        return ()
    module = torch.distributions.kl
    return tuple(fn for fn in vars(module).values()
                 if inspect.isfunction(fn) and fn.__module__ == module.__name__
                 and not fn.__closure__)


@contextlib.contextmanager
def _tripwires(forbid: frozenset = frozenset()):
    """While the student's function runs, every answer function (and every function of a
    torch module the exercise forbids, named "torch.…") runs ``_trip`` instead of its own
    code: a call from any thread, also one started before the check (a thread pool), is
    noted in ``_TRIPPED``. The profile hook of ``_Watch`` sees only the calling thread and
    threads started during the call."""
    mine, theirs = _answer_functions(), _torch_functions(forbid)
    functions = mine + theirs
    saved = [fn.__code__ for fn in functions]
    del _TRIPPED[:]
    for fn, code in zip(functions, saved, strict=True):
        name = code.co_qualname if fn in mine else f"torch.{code.co_qualname}"
        fn.__code__ = _trip.__code__.replace(co_name=code.co_name, co_qualname=name)
    try:
        yield _TRIPPED
    finally:
        for fn, code in zip(functions, saved, strict=True):
            fn.__code__ = code


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise ``_TimeUp`` in the block after ``seconds``: SIGALRM, main thread only (elsewhere,
    or without SIGALRM, no bound). The previous handler and timer come back afterwards."""
    if not (seconds and seconds > 0 and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()):
        yield
        return
    armed = True

    def stop(signum, frame):
        if armed:
            raise _TimeUp

    previous = signal.signal(signal.SIGALRM, stop)
    started = time.monotonic()
    delay, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if delay > 0:  # an outer timer was running: what was left of it
            left = max(delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


class _TorchCalls(torch.overrides.TorchFunctionMode):
    """Notes the first torch function the student's call reaches that ``refused(name)`` refuses,
    however it is reached: the profile hook sees a builtin only when Python calls it directly,
    while this mode sees it also when C code does (``functools.partial``, ``map``)."""

    def __init__(self, refused):
        super().__init__()
        self.refused = refused
        self.called: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.called is None and self.refused(name):
            self.called = name
        return func(*args, **(kwargs or {}))


def _call(fn, signature: str, *args, forbid: frozenset = frozenset(), windows: bool = False,
          refusal: str | None = None, ops: frozenset = frozenset()):
    """Call the student's function within the time limit, watching for calls into vaelab's
    answers (and the files in ``forbid``, named with ``refusal`` where one is given; with
    ``windows``, conv, pooling and unfold ops); turn its errors into one friendly line."""
    watch = _Watch(forbid, windows, refusal, ops)
    torch_calls = _TorchCalls(lambda name: name in ops
                              or bool(windows and WINDOW_OPS.search(name)))
    try:
        with _time_limit(TIME_LIMIT_S), _tripwires(forbid) as tripped, watch:
            try:
                with torch_calls:
                    out = fn(*args)
            finally:
                if tripped and watch.called is None:  # a call the profile hook did not see
                    torch_name = tripped[0].removeprefix("torch.")
                    watch.called = (f"torch's own {torch_name}" if torch_name != tripped[0]
                                    else f"vaelab's own {tripped[0]}")
                    watch.forbidden = torch_name != tripped[0]
                if torch_calls.called and watch.called is None:  # ... or one made from C
                    watch.called = f"torch's own {torch_calls.called}"
                    watch.forbidden = True
    except NotImplementedError as e:
        raise _NotWritten from e
    except _TimeUp:
        raise _Problem(f"your function ran longer than {TIME_LIMIT_S:g} s and was stopped — an "
                       "endless loop? or a Python loop over pixels or images where tensor "
                       "operations would do it at once") from None
    except SystemExit:
        raise _Problem("your function called exit() — remove that call; a function hands "
                       "back its result with `return`") from None
    except Exception as e:
        watch.verdict()
        raise _Problem(f"your function raised {type(e).__name__}: {_first_line(e)} — "
                       f"{_hint(e, signature)}") from e
    watch.verdict()
    return out


class Verdict:
    """A checker's result: true when the function passed. Shows nothing in a notebook (the
    checker has already printed its one line), so a cell ending in a check shows no "True"."""

    __slots__ = ("passed",)

    def __init__(self, passed: bool):
        self.passed = bool(passed)

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other) -> bool:
        return self.passed == bool(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        pass


def _checker(expects: str):
    """Wrap ``body(fn) -> praise`` into a checker that prints one line and returns a bool."""

    def wrap(body):
        name = body.__name__

        @functools.wraps(body)
        def run(fn) -> Verdict:
            try:
                if not callable(fn):
                    raise _Problem(f"pass your function itself, e.g. check.{name}({name}); "
                                   f"got {_describe(fn)}")
                with torch.random.fork_rng(devices=[]), _other_generators_seeded(0):
                    torch.manual_seed(0)
                    praise = body(fn)
            except _NotWritten:
                print(f"{NOT_YET} {name}: not written yet — replace `raise NotImplementedError` "
                      "with your code")
                return Verdict(False)
            except _Problem as p:
                print(f"{FAILED} {name}: {p}")
                return Verdict(False)
            except Exception as e:  # the result tripped the checker up: say what was expected
                print(f"{FAILED} {name}: could not check the result ({type(e).__name__}: "
                      f"{_first_line(e)}) — the function should return {expects}")
                return Verdict(False)
            print(f"{PASSED} {name}: passed — {praise}")
            return Verdict(True)

        run.__doc__ = (body.__doc__ or "") + (
            "\n\nPrints one line (passed, or the mistake and a hint) and returns a Verdict that is "
            "true when it passed; "
            "never raises.")
        return run

    return wrap


# --------------------------------------------------------------------------------------------
# Helpers shared by the checkers


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol, atol))


def _tensor(out, what: str, numpy_ok: bool = False) -> torch.Tensor:
    """The student's result as a tensor (a numpy array too where ``numpy_ok``: no gradient is
    needed there), or a ``_Problem`` saying what to return."""
    if numpy_ok and isinstance(out, np.ndarray) and out.dtype.kind in "fiu":
        return torch.from_numpy(out.astype(np.float64, copy=False))
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        raise _Problem(f"you returned a {type(out).__name__} (named terms); return only {what}")
    if not isinstance(out, torch.Tensor):
        kind = "a Python number (.item() cuts the gradient)" if isinstance(out, (int, float)) \
            else _describe(out)
        raise _Problem(f"return {what} as a torch.Tensor; got {kind}"
                       + (" — did you forget `return`?" if out is None else ""))
    return out


# share of a standard normal beyond |ε| > t, and the tolerance a sample of 30,000 allows
NORMAL_TAILS = {2.0: (0.0455, 0.006), 2.5: (0.0124, 0.0032), 3.0: (0.0027, 0.0015)}


def _normal_tails(e: torch.Tensor) -> bool:
    """True when the shares of ``e`` beyond 2, 2.5 and 3 in absolute value are those of a
    standard normal (so clipped or bounded noise with mean 0 and variance 1 fails), and its
    excess kurtosis is 0 within 0.12 (over all 30,000 entries its standard error is 0.028 for
    normal noise; Student-t noise with 30 degrees of freedom has 0.23, and a scale that changes
    from row to row makes it positive too)."""
    kurtosis = float((e.double() ** 4).mean() / (e.double() ** 2).mean() ** 2 - 3)
    return abs(kurtosis) <= 0.12 and all(abs((e.abs() > t).double().mean().item() - p) <= tol
                                         for t, (p, tol) in NORMAL_TAILS.items())


def _same_spread_everywhere(e: torch.Tensor) -> None:
    """The standardised noise ``e`` (N, L) must have the same spread in every part of the
    batch: even and odd rows, and each tenth of the rows (standard error of a part's standard
    deviation about 0.006 for halves and 0.013 for tenths of 10,000 × 3; the test allows 0.065,
    5 of those)."""
    parts = [e[0::2], e[1::2], *e.chunk(10)]
    spreads = torch.stack([p.std() for p in parts])
    if (spreads - e.std()).abs().max() > 0.065:
        raise _Problem("the spread of ε changes from one part of the batch to another (even and "
                       "odd rows, or blocks of rows) — every row's noise is a standard normal, "
                       "scaled by its own σ only")


@contextlib.contextmanager
def _other_generators_seeded(seed: int):
    """numpy's and Python's global generators seeded for the check, their states put back after
    it: a function that draws its noise there gives the same draws on every check, so the
    statistical tests cannot fail a right answer by chance."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _finite(out: torch.Tensor, hint: str) -> None:
    if not torch.isfinite(out.detach()).all():
        raise _Problem(f"the result has NaN or inf values — {hint}")


def _needs_grad(out: torch.Tensor) -> None:
    if not out.requires_grad:
        raise _Problem("the result is cut off from the gradient (.detach(), .item(), numpy or "
                       "torch.no_grad?) — training needs gradients to flow through it")


def _same_gradient(out: torch.Tensor, inputs: list[torch.Tensor], reference,
                   nonfinite: str | None = None) -> None:
    """The gradient of ``out.sum()`` with respect to ``inputs`` (the leaves the student's
    function got) must be the reference function's: a result rebuilt with
    ``requires_grad_()`` after numpy, ``.detach()`` or ``torch.no_grad()`` has the right values
    but no gradient, and one with a constant in the wrong place the wrong gradient (an input
    the result does not use has gradient 0). A NaN or inf in the gradient gets the hint
    ``nonfinite`` where one is given."""
    _needs_grad(out)
    got = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    if nonfinite and any(g is not None and not torch.isfinite(g).all() for g in got):
        raise _Problem(nonfinite)
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    want = torch.autograd.grad(reference(*leaves).sum(), leaves)
    got = [torch.zeros_like(w) if g is None else g for g, w in zip(got, want, strict=True)]
    if any(not _close(g, w, atol=1e-3) for g, w in zip(got, want, strict=True)):
        raise _Problem("the values are right but the gradient is not — the result must be "
                       "computed from the inputs with torch operations all the way (no numpy, "
                       ".detach() or torch.no_grad() on the way, and no input treated as a "
                       "constant)")


def _match(out: torch.Tensor, variants, rtol: float = 1e-3) -> str | None:
    """The message of the first ``(value, message)`` variant that ``out`` equals, else None."""
    for value, message in variants:
        if _close(out, value, rtol=rtol, atol=1e-3):
            return message
    return None


def _per_image(out: torch.Tensor, ref: torch.Tensor, what: str,
               reduce_hint: str) -> tuple[torch.Tensor, str]:
    """``out`` with the ``(N,)`` shape of ``ref`` and a note for the praise; an ``(N, 1)`` or
    ``(N, 1, 1, 1)`` result (a sum with keepdim=True) is flattened. Complain helpfully about
    any other shape."""
    n = len(ref)
    if out.shape == ref.shape:
        return out, ""
    if out.dim() > 1 and out.shape[0] == n and out.numel() == n:
        return out.reshape(n), f" (your (N{', 1' * (out.dim() - 1)}) result was read as (N,))"
    if out.numel() == 1:
        v = out.detach().reshape(())
        if _close(v, ref.sum()):
            raise _Problem(f"you summed over the batch too; return {what}, shape ({n},)")
        if _close(v, ref.mean()):
            raise _Problem(f"you averaged over the batch; return {what}, shape ({n},)")
        raise _Problem(f"you returned one number; return {what}, shape ({n},) — "
                       "reduction='mean' averages over pixels and batch alike")
    if out.shape[0] == n and out.dim() > 1:
        raise _Problem(f"got shape {tuple(out.shape)}; {reduce_hint} to get shape ({n},)")
    raise _Problem(f"got shape {tuple(out.shape)}; return {what}, shape ({n},)")


# --------------------------------------------------------------------------------------------
# Crafted inputs (fixed, so every student sees the same verdict)


def _gaussian_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """4 images × 3 latent dims; the first row is the prior itself (KL = 0)."""
    mu = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 2.0], [0.3, 1.2, -1.5], [-2.0, 0.7, 0.1]])
    logvar = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.5, 1.2], [0.8, -0.6, 1.1],
                           [1.5, -2.0, 0.9]])
    return mu, logvar


def _eps_in_log(out: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> bool:
    """Whether ``out`` is the KL with an ε inside the log, ½Σ(μ² + σ² − 1 − log(σ² + ε)), for
    some ε from 1e-12 to 1e-3."""
    var = logvar.double().exp()
    return any(_close(out.double(), 0.5 * (mu.double() ** 2 + var - 1
                                           - torch.log(var + 10.0 ** -k)).sum(1))
               for k in range(3, 13))


EPS_IN_LOG = ("an ε inside the log, log(σ² + ε), changes the KL where σ² is small — logvar "
              "already is log σ²: use it as it is")


def _any_latent_size(fn) -> None:
    """The KL must be right for another number of latents too (5, not the 3 of the main test),
    so a constant such as the 3 of ``mean(1) * 3`` shows, and for log-variances down to −22
    (σ² of 3e-10, where an ε of 1e-8 inside the log is 0.9 nats off per unit)."""
    g = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(6, 5, generator=g), 4 * torch.randn(6, 5, generator=g)
    # the draw alone spans −6.7 to 10.9; small and large apart, so e^12 hides no floor
    logvar[0], logvar[1] = torch.tensor([-12.0, -10.0, -8.0, -1.0, 0.5]), torch.linspace(8, 12, 5)
    logvar[2] = torch.tensor([-22.0, -18.0, -15.0, -2.0, 0.0])
    out = _tensor(_call(fn, "fn(mu, logvar)", mu.clone(), logvar.clone(),
                        forbid=frozenset({TORCH_KL_FILE})), "the KL per image")
    if not _close(out.detach().reshape(-1), losses.kl_divergence(mu, logvar)):
        if out.numel() == len(mu) and _eps_in_log(out.detach().reshape(-1), mu, logvar):
            raise _Problem(EPS_IN_LOG)
        raise _Problem("right on the first inputs but not for 5 latent dimensions with "
                       "log-variances from about −22 to 12 — sum over however many dimensions "
                       "mu has (dim=1), with nothing written in or clamped")


def _image_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(4, 1, 28, 28)`` in [-8, 8] and images in [0, 1]: binary, grey, sparse, soft."""
    g = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(4, 1, 28, 28, generator=g)).clamp(-8, 8)
    u = torch.rand(4, 1, 28, 28, generator=g)
    x = torch.stack([(u[0] > 0.5).float(), u[1], (u[2] > 0.8).float() * u[2],
                     torch.sigmoid(logits[3] + 1)])
    return logits, x


# a trained decoder's far logits (±40, ±150), ±1000, and ±18 and ±25, where a sigmoid taken
# first already fails (so a switch to a stable form only far out is caught). Once σ rounds to 1
# (from a logit of about 16.6 up) a sigmoid taken first gives an infinite loss for any pixel
# below 1, or a far-off one through F.binary_cross_entropy, which clamps each log at −100; just
# below that it is off by up to ln 2 for a black pixel (1 − σ is rounded to twice its value)
LARGE_LOGITS = (18.0, 25.0, 40.0, 150.0, 1000.0)


def _stable_on_large_logits(fn, mean: bool = False, watch: dict | None = None) -> None:
    """A trained decoder gives logits of ±40 to ±150 far from its codes, and in float32 sigmoid
    rounds to exactly 1 from about +17 (to 0 from about −89): the reconstruction term and its
    gradient must stay finite and right there (``mean``: ``fn`` gives its batch mean, not one
    value per image; ``watch``: what else ``_call`` refuses, as in the exercise's first call)."""
    g = torch.Generator().manual_seed(3)
    n = len(LARGE_LOGITS)
    logits = torch.tensor(LARGE_LOGITS).view(n, 1, 1, 1) * torch.randn(
        n, 1, 28, 28, generator=g).sign()
    x = torch.rand(n, 1, 28, 28, generator=g)
    leaf = logits.clone().requires_grad_()
    out = _tensor(_call(fn, "fn(logits, x)", leaf, x.clone(), **(watch or {})),
                  "the reconstruction term per image")
    got = out.detach().reshape(-1)

    def reference(lg):
        per_image = losses.bernoulli_nll_per_image(lg, x)
        return per_image.mean().reshape(1) if mean else per_image

    want = reference(logits)
    if got.shape == want.shape and not torch.isfinite(got).all():
        raise _Problem("right on moderate logits, but inf or NaN on large ones (±18 to ±1000), "
                       "which a trained decoder gives far from its codes: in float32 e^ℓ "
                       "overflows from ℓ ≈ 88.7, and σ(ℓ) rounds to exactly 0 or 1 — rewrite "
                       "so that no step overflows or takes log 0 (log σ(ℓ) = −softplus(−ℓ))")
    if got.shape != want.shape or not _close(got, want, rtol=1e-4, atol=1e-2):
        raise _Problem("right on moderate logits but not on large ones (±18 to ±1000), which a "
                       "trained decoder gives far from its codes: there sigmoid rounds to 0 or "
                       "1 and its log is −inf or clipped — work with the logits themselves "
                       "(log σ(ℓ) = −softplus(−ℓ))")
    _same_gradient(out, [leaf], reference, nonfinite=(
        "right values on large logits (±18 to ±1000), but the gradient there is NaN or inf, so "
        "training would break: torch.where computes both branches for every logit, and an "
        "overflow in the branch it drops still poisons the gradient (0 · inf = NaN) — keep "
        "every branch finite for every logit, or use a torch function that is stable by design"))


ONE_IMAGE = "a batch of one image (N = 1)"
UNSQUEEZED = "don't squeeze the batch axis away (squeeze() drops every axis of size 1, N's too)"


def _one_image(fn, loss: bool = False, watch: dict | None = None) -> None:
    """A batch of one image (N = 1) must work too, where a ``squeeze()`` that drops the channel
    axis drops the batch axis as well. ``loss``: ``fn`` is the exercise's ``vae_loss`` (run at
    β = 1, a scalar); else the reconstruction term, one value per image. ``watch``: what else
    ``_call`` refuses."""
    logits, x = (t[1:2].clone() for t in _image_inputs())  # the grey image
    mu, logvar = (t[1:2].clone() for t in _gaussian_inputs())
    if loss:
        want = losses.vae_loss(logits, x, mu, logvar, beta=1.0).total.reshape(1)
        what, signature, args = "loss", "fn(logits, x, mu, logvar, beta)", (logits, x, mu,
                                                                           logvar, 1.0)
    else:
        want = losses.bernoulli_nll_per_image(logits, x)
        what, signature, args = "reconstruction term", "fn(logits, x)", (logits, x)
    try:
        out = _tensor(_call(fn, signature, *args, **(watch or {})), f"the {what}")
    except _Problem as p:
        e = p.__cause__
        if isinstance(e, Exception):  # the student's function raised
            raise _Problem(f"{ONE_IMAGE} fails: your function raised {type(e).__name__}: "
                           f"{_first_line(e)} — {UNSQUEEZED}") from e
        raise _Problem(f"for {ONE_IMAGE}, {p}") from p
    if out.numel() != 1 or not (loss or out.dim() >= 1):  # a loss may be () or (1,)
        raise _Problem(f"{ONE_IMAGE} gave shape {tuple(out.shape)}, not "
                       f"{'()' if loss else '(1,)'} — {UNSQUEEZED}")
    if not _close(out.detach().reshape(1), want, rtol=1e-4, atol=1e-2):
        raise _Problem(f"{ONE_IMAGE} gets the wrong {what} — {UNSQUEEZED}")


def _inputs_kept(given, originals) -> None:
    """``mu`` and ``logvar`` as the caller passed them: a function that changed them in place
    (``logvar.data.zero_()``, ``mu.data.pow_(2)``) fails, since the caller still needs them."""
    if not all(torch.equal(g.detach(), o) for g, o in zip(given, originals, strict=True)):
        raise _Problem("your function changed mu or logvar in place (mu.data.pow_(2), "
                       "logvar.exp_(), ...) — the caller still needs them: compute new "
                       "tensors (mu.pow(2), logvar.exp())")


def _scores_of_a_copy(fn, x: torch.Tensor):
    """``fn`` run on a copy of the images ``x``; a function that changes that copy in place (on
    any of the batches it is given: blank and faint images too) fails."""
    given = x.clone()
    out = _tensor(_call(fn, "fn(x)", given), "the scores", numpy_ok=True)
    if not torch.equal(given, x):
        raise _Problem("your function changed its input x in place (x /= ..., x.div_(...), "
                       "x[...] = ...) — the caller's images must stay as they were: compute "
                       "new tensors (x / ...) instead")
    return out


def _donut_edge_cases(fn) -> None:
    """Each image is scored on its own ink: faint copies (ink × 0.001 and × 1e-6; the faintest
    is the stick map's, total ink 1.7e-4, so an eps added to the sum passes up to about 4e-7,
    float32's machine epsilon included, and a floor near that ink fails) score as the images
    do, a blank image beside inked ones still scores 0 while they keep their scores, and a
    batch of one image works."""
    donut, stick = anchor.donut_map()[None], anchor.stick_map()[None]
    x = torch.stack([torch.zeros_like(donut), donut, 0.001 * donut, stick, 1e-6 * donut,
                     1e-6 * stick])
    out = _scores_of_a_copy(fn, x)
    out, want = out.detach().reshape(-1).double(), anchor.donutness(x).double()
    if out.shape != want.shape:
        raise _Problem(f"{len(x)} images gave {tuple(out.shape)} scores; return one per image")
    full = [0, 1, 3]  # the blank image, the donut map and the stick map
    if not _close(out[full], want[full], atol=1e-3):
        raise _Problem("with a blank image in the batch the scores change — score each image "
                       "on its own ink: the blank one 0, the others as without it")
    for i, (scale, name) in {2: ("0.001", "donut"), 4: ("1e-6", "donut"),
                             5: ("1e-6", "stick")}.items():
        if abs(out[i] - want[i]) > 1e-3:
            raise _Problem(f"a faint copy of the {name} map (ink × {scale}) scores "
                           f"{out[i]:.3f}, not {want[i]:.3f} like the map itself — divide by "
                           "the image's own total ink (its sum over pixels), with an eps "
                           "against 0/0 below about 4e-7 added to that sum (1e-8 is safe; an "
                           "eps on a mean is 784 times larger against the ink) and any floor "
                           f"below this faint image's ink, {float(x[i].sum()):.3g}")
    one = _scores_of_a_copy(fn, x[1:2])
    if one.dim() == 0 or one.shape[0] != 1 or one.numel() != 1 or abs(
            float(one.detach().reshape(-1)[0]) - float(want[1])) > 1e-3:  # (1,), or (1, 1)
        raise _Problem("a batch of one image (N = 1) must give one score of shape (1,) — "
                       "don't squeeze the batch axis away")


# a loss off by the same amount whatever β and the KL: the reconstruction term is off
RECONSTRUCTION_OFF = ("your loss is {}, so the reconstruction term is off, not the KL — an ε "
                      "inside a log, or a sigmoid taken first? Work with the logits "
                      "(log σ(ℓ) = −softplus(−ℓ))")


def _vae_loss_variants(recs, kls, beta: float, batch_sum) -> list:
    """(loss, hint) for the known wrong β-VAE losses: β in the wrong place, the batch summed,
    and every known mistake in one of the two terms (``recs``, ``kls``: (per image, hint),
    the right term first with hint None)."""
    (rec_ref, _), (kl_ref, _) = recs[0], kls[0]
    rec, kl = rec_ref.mean(), kl_ref.mean()
    variants = [(rec + kl, "β has no effect — multiply the KL term by beta"),
                (beta * rec + kl, "β should weigh the KL term, not the reconstruction"),
                (rec + kl / beta, "β multiplies the KL term; it doesn't divide it"),
                (beta * (rec + kl), "β should weigh only the KL term"),
                (rec - beta * kl, "the KL term must be added (loss = −ELBO)"),
                (batch_sum, "you summed over the batch; the loss is a batch mean (nats per image)"),
                (rec_ref.sum() + beta * kl, "the reconstruction is summed over the batch but the "
                                            "KL averaged — average both"),
                (rec + beta * kl_ref.sum(), "the KL is summed over the batch but the "
                                            "reconstruction averaged — average both")]
    for r, r_msg in recs:
        for k, k_msg in kls:
            if r_msg or k_msg:
                where = (f"in the reconstruction term: {r_msg}" if r_msg
                         else f"in the KL term: {k_msg}")
                variants.append((r.mean() + beta * k.mean(), where))
    return variants


def _vae_loss_no_floor(fn) -> None:
    """A latent at the prior (μ = 0, logvar = 0: KL 0) must cost nothing: a floor λ under each
    latent's KL (free bits, notebook 03) adds β·λ per such latent, and a floor under each
    image's KL or under the batch's total ("free nats") adds to a batch whose codes all sit at
    the prior. Run at β = 8 and compared with the reference loss to float32 rounding (2e-6 of
    the loss, at least 2e-4 nats), so a floor as small as 0.001 nats (8e-3 at β = 8) shows.
    A floor is named only when the offset grows in proportion to β (none at β = 0, half at
    β = 4); another offset is left to the tests that follow, which name more mistakes."""
    logits, x = _image_inputs()
    mu, logvar = _gaussian_inputs()
    mu, logvar = mu.clone(), logvar.clone()
    mu[:, 1:] = 3.0 + mu[:, 1:].abs()  # every image's other latents far from the prior (KL
    mu[:, 0], logvar[:, 0] = 0.0, 0.0  # 4.5 nats each or more); latent 1 at it, for every image
    at_prior = torch.zeros_like(mu), torch.zeros_like(logvar)
    for codes, where, floor in (
            ((mu, logvar), "with one latent at the prior for every image (its KL 0)",
             "a floor under each latent's KL (free bits) is not the β-VAE loss: charge each "
             "latent its own KL"),
            (at_prior, "with every code at the prior (KL 0)",
             "a floor under each image's KL or under the batch's total KL (free nats) is not "
             "the β-VAE loss: charge each image its own KL")):
        extra, grows_with_beta = _vae_loss_offset(fn, logits, x, *codes)
        if extra and extra > 0 and grows_with_beta:
            raise _Problem(f"{where} your loss is {extra:+.3g} nats off at β = 8 — {floor}")


def _vae_loss_offset(fn, logits, x, mu, logvar) -> tuple[float | None, bool]:
    """How far ``fn``'s loss at β = 8 is from the reference (None when within float32
    rounding: 2e-6 of the loss, at least 2e-4 nats), and whether that offset grows in
    proportion to β, as a floor under the KL's does; an offset that is the same at β = 0 is
    named as one in the reconstruction term."""
    def offset(beta: float) -> float | None:
        out = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", logits.clone(), x.clone(),
                            mu.clone(), logvar.clone(), beta), "the loss")
        ref = losses.vae_loss(logits, x, mu, logvar, beta=beta).total
        return (float(out.detach().double().reshape(())) - float(ref.double())
                if out.numel() == 1 else None)

    tolerance = max(2e-4, 2e-6 * abs(float(losses.vae_loss(logits, x, mu, logvar, 8.0).total)))
    extra = offset(8.0)
    if extra is None or abs(extra) <= tolerance:
        return None, False
    at_zero = offset(0.0)
    if at_zero is not None and abs(extra - at_zero) <= tolerance:
        raise _Problem(RECONSTRUCTION_OFF.format(f"{extra:+.3g} nats off at β = 8 and the same "
                                                 "at β = 0"))
    at_four = offset(4.0)
    grows = (at_zero is not None and abs(at_zero) <= tolerance and at_four is not None
             and abs(extra - 2 * at_four) <= 2 * tolerance)
    return extra, grows


def _vae_loss_other_sizes(fn) -> None:
    """The loss must be right for another batch (6 images, none at the prior) and another
    number of latents (5), so a batch size or latent count written in shows."""
    g = torch.Generator().manual_seed(5)
    logits = (3 * torch.randn(6, 1, 28, 28, generator=g)).clamp(-8, 8)
    x = torch.rand(6, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    out = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", logits, x, mu, logvar, 2.0),
                  "the loss")
    if out.numel() != 1 or not _close(out.detach().reshape(()),
                                      losses.vae_loss(logits, x, mu, logvar, beta=2.0).total):
        raise _Problem("right for the first inputs but not for 6 images with 5 latent "
                       "dimensions — nothing may depend on a fixed batch size or number of "
                       "latents: sum over the dimensions each tensor has, average over its rows")


def _vae_loss_wide_latents(fn) -> None:
    """The loss and its gradient must be right for means and log-variances spanning ±30 (the
    first inputs stay within about ±2; a trained encoder can give logvar of −9 and below), so a
    clamp on μ or logvar, or a floor under σ as small as 1e-6, shows. Small and large
    log-variances go in separate calls, so that e^30 in one does not hide a floor in the other."""
    logits, x = _image_inputs()
    wide = ("right on the first inputs but not for means and log-variances up to about ±30, "
            "which a trained encoder can give — use mu and logvar as they come, with nothing "
            "clamped and no floor under sigma")
    mu = torch.linspace(-30.0, 30.0, 12).view(4, 3)
    for logvar in (torch.linspace(-30.0, 0.0, 12).view(3, 4).T,
                   torch.linspace(0.0, 30.0, 12).view(3, 4).T):
        leaves = [t.clone().requires_grad_() for t in (logits, mu, logvar)]
        out = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", leaves[0], x.clone(),
                            *leaves[1:], 1.0), "the loss")

        def reference(lg, m, lv):
            return losses.vae_loss(lg, x, m, lv, beta=1.0).total

        if out.numel() != 1 or not _close(out.detach().reshape(()),
                                          reference(logits, mu, logvar)):
            raise _Problem(wide)
        try:
            _same_gradient(out, leaves, reference)
        except _Problem:
            raise _Problem("right on the first inputs, but for means and log-variances up to "
                           "about ±30 the gradient is not — use mu and logvar as they come (no "
                           "clamp, no floor under sigma) and torch operations all the way (no "
                           ".detach(), numpy or torch.no_grad())") from None


def _vae_loss_beta_zero(fn) -> None:
    """β = 0 (notebook 04's first model) leaves the reconstruction term alone, with a finite
    value and gradient: a β divided out and multiplied back in gives 0 · inf = NaN there."""
    logits, x = _image_inputs()
    mu, logvar = _gaussian_inputs()
    leaves = [t.clone().requires_grad_() for t in (logits, mu, logvar)]
    out = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", leaves[0], x.clone(),
                        *leaves[1:], 0.0), "the loss")
    at_zero = "with β = 0 (the notebook's first model)"
    _finite(out, f"{at_zero} nothing may be divided by β: β only weighs the KL term")
    rec = losses.bernoulli_nll_per_image(logits, x).mean()
    if out.numel() != 1 or not _close(out.detach().reshape(()), rec, rtol=1e-5, atol=1e-3):
        raise _Problem(f"{at_zero} the loss is off — β weighs only the KL term, so β = 0 "
                       "leaves the reconstruction term alone")
    far = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", logits.clone(), x.clone(),
                        30 * mu, logvar.clone(), 0.0), "the loss")  # a KL of about 1,000 nats
    near = float(out.detach().double().reshape(())) - float(rec)
    extra = float(far.detach().double().reshape(-1)[0]) - float(rec) if far.numel() == 1 else 1.0
    tolerance = max(2e-4, 2e-6 * abs(float(rec)))
    if abs(extra - near) > tolerance:
        raise _Problem(f"{at_zero} your loss changes by {extra - near:+.3g} nats when the KL "
                       "grows to about 1,000 nats (μ up to about ±60) — at β = 0 the KL term "
                       "must weigh nothing: is β floored or clamped?")
    if abs(near) > tolerance:
        raise _Problem(RECONSTRUCTION_OFF.format(f"{near:+.3g} nats off at β = 0"))
    _same_gradient(out, leaves, lambda lg, m, lv: losses.vae_loss(lg, x, m, lv, beta=0.0).total,
                   nonfinite=f"{at_zero} the value is right but the gradient has NaN or inf "
                             "values — nothing may be divided by β, not even in a branch that "
                             "torch.where drops")


def _kl_variants(mu, logvar):
    """Known wrong KL formulas, ``(N,)`` each, with what to say."""
    ref = losses.kl_divergence(mu, logvar)
    var, L = logvar.exp(), mu.shape[1]
    sq = mu.square()
    log_sigma = "logvar already is log σ², use it as is (σ² = exp(logvar))"
    return [
        (-ref, "KL has the wrong sign — a KL divergence is never negative; check each term's sign"),
        (2 * ref, "twice the right answer — the factor ½ in front is missing"),
        (ref / 2, "half the right answer — the factor ½ is applied twice"),
        (ref / L, "you averaged over latent dimensions; KL sums over them"),
        ((var + sq - 0.5 * logvar - 0.5).sum(1),
         "looks like Σ(σ² + μ² − log σ − ½): the σ² and μ² terms need their factor ½ too"),
        (0.5 * (sq + (2 * logvar).exp() - 2 * logvar - 1).sum(1),
         f"looks like logvar was treated as log σ — {log_sigma}"),
        (0.5 * (sq + var - 0.5 * logvar - 1).sum(1),
         f"looks like log σ where log σ² belongs — {log_sigma}"),
        (0.5 * (sq + (2 * logvar).exp() - logvar - 1).sum(1),
         f"σ² came out as exp(logvar)² — {log_sigma}"),
        (0.5 * (sq + (0.5 * logvar).exp() - logvar - 1).sum(1),
         "exp(½·logvar) is σ, not σ² — the variance is exp(logvar)"),
        (ref + L / 2, "the −1 inside the sum is missing (KL of the prior to itself must be 0)"),
        (ref - 0.5 * sq.sum(1), "the μ² term is missing"),
        (ref + logvar.sum(1), "the log σ² term has the wrong sign"),
    ]


def _bernoulli_variants(logits, x):
    """Known wrong reconstruction terms, ``(N,)`` each, with what to say."""
    ref = losses.bernoulli_nll_per_image(logits, x)
    p = torch.sigmoid(logits)

    def bce(prob):
        return F.binary_cross_entropy(prob, x, reduction="none").flatten(1).sum(1)

    twice = "sigmoid applied twice — the term takes the logits as they are"
    return [
        (ref / x[0].numel(), "you averaged over pixels; sum over pixels (nats per image)"),
        (-ref, "wrong sign — the loss is −log p(x|z), which is ≥ 0"),
        (F.binary_cross_entropy_with_logits(p, x, reduction="none").flatten(1).sum(1), twice),
        (bce(torch.sigmoid(p)), "sigmoid applied twice — the decoder's logits need one sigmoid"),
        (F.binary_cross_entropy_with_logits(x, logits, reduction="none").flatten(1).sum(1),
         "arguments swapped — the images are the targets, the logits the predictions"),
        ((p - x).square().flatten(1).sum(1),
         "that is the squared error (a Gaussian decoder); the Bernoulli term is a cross-entropy"),
        (-(x * p.log()).flatten(1).sum(1), "the (1 − x)·log(1 − p) term is missing"),
    ]


def _donut_variants(x, ref):
    """Known wrong donutness scores, ``(N,)`` each, with what to say."""
    donut, stick = anchor.donut_map().flatten(), anchor.stick_map().flatten()
    ink = x.flatten(1)
    on_donut, on_stick, total = ink @ donut, ink @ stick, ink.sum(1)
    share = "a share of the image's own ink"
    return [
        (-ref, "the sign is flipped — donut share minus stick share"),
        (on_donut - on_stick, f"not normalised — divide by the image's total ink to get {share}"),
        ((on_donut - on_stick) / ink.numel() * len(x),
         f"you divided by the number of pixels; divide by the total ink to get {share}"),
        ((on_donut - on_stick) / total.sum(), "divide by each image's own total ink, not the "
                                              "whole batch's"),
        (on_donut / total, "the stick share is missing — subtract it"),
        (on_donut / donut.sum() - on_stick / stick.sum(),
         f"you divided by the size of each map; divide by the total ink to get {share}"),
    ]


def _lagged_correlations(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``r[k, i, j]``, the correlation of column i at row t with column j at row t + k, for
    every lag k that leaves at least 200 row pairs (by FFT), and the number of pairs behind
    each lag."""
    n = len(e)
    x = (e.double() - e.double().mean(0)) / e.double().std(0)
    f = torch.fft.rfft(x, n=2 * n, dim=0)  # zero-padded: no wrap-around
    lags = max(n - 200, 1)
    summed = torch.fft.irfft(f.conj()[:, :, None] * f[:, None, :], n=2 * n, dim=0)[:lags]
    pairs = (n - torch.arange(lags)).double()
    return summed / pairs[:, None, None], pairs


def _independent_rows(e: torch.Tensor) -> None:
    """The standardised noise ``e`` (N, L) of ``reparameterize`` must be drawn afresh for every
    row: no row a copy of another up to sign and order of its entries, neighbouring rows and
    the two halves of the batch uncorrelated in every pair of columns (about 0 ± 0.014), and
    no correlation between rows at any distance that leaves 200 pairs, in any pair of columns,
    beyond 6.5 standard errors (a right answer crosses that about once in 100,000 checks)."""
    rows = e.abs().round(decimals=6).sort(dim=1).values  # a row mirrored or its columns turned
    if len(torch.unique(rows, dim=0)) < len(rows):
        raise _Problem("some rows' ε repeat (or mirror, or reorder) other rows' — every row needs "
                       "its own independent draw: torch.randn_like(mu)")
    half = len(e) // 2
    pairs = torch.stack([torch.corrcoef(torch.stack([a[:, i], b[:, j]]))[0, 1]
                         for a, b in ((e[0::2], e[1::2]), (e[:half], e[half:2 * half]))
                         for i in range(e.shape[1]) for j in range(e.shape[1])])
    if pairs.abs().max() > 0.1:
        raise _Problem("the rows' ε are related (shared or mirrored between rows) — every "
                       "row needs its own independent draw: torch.randn_like(mu)")
    r, counts = _lagged_correlations(e)
    r[0] -= torch.eye(e.shape[1], dtype=r.dtype)  # a column with itself at lag 0
    score = r.abs() * counts.sqrt()[:, None, None]  # in standard errors
    if score.max() > 6.5:
        lag = int(score.amax(dim=(1, 2)).argmax())
        raise _Problem(f"the rows' ε are related: rows {lag} apart are correlated "
                       f"({float(r[lag].abs().max()):.2f}) — every row needs its own "
                       "independent draw: torch.randn_like(mu)")


def _reparam_inputs(n: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and logvar ``(n, 3)`` that differ from row to row: μ about (1, −2, 0.5) ± 1, σ from 0.5
    to 5 (logvar uniform), so a z that takes μ or σ from other rows shows."""
    g = torch.Generator().manual_seed(2_718_281_828)  # not a seed a student's generator takes
    mu = torch.tensor([1.0, -2.0, 0.5]) + torch.randn(n, 3, generator=g)
    logvar = 2 * torch.empty(n, 3).uniform_(math.log(0.5), math.log(5.0), generator=g)
    return mu, logvar


OWN_ROW = "(no mean over rows or dimensions, no shifted rows)"


def _own_mu(dev: torch.Tensor, mu: torch.Tensor) -> None:
    """``dev`` = z − μ must not go against μ: a z centred on other rows' μ (a mean over the
    batch, rows shifted) has z − μ falling as μ rises (correlation about −0.4 here; 0 ± 0.01
    when each row uses its own)."""
    corr = torch.stack([torch.corrcoef(torch.stack([dev[:, j], mu[:, j]]))[0, 1]
                        for j in range(mu.shape[1])])
    if (corr.abs() > 0.1).any():
        raise _Problem(f"z is not centred on each row's own μ — row i of z must use row i of "
                       f"mu {OWN_ROW}")


# the standard deviation of 10,000 standard-normal draws is 1 ± 0.0071: five standard errors
# (scales off by more, 1.02 say, meet the exact and the 300,000-draw tests too)
SPREAD_TOL = 0.036


def _check_spread(dev: torch.Tensor, sigma: torch.Tensor, logvar: torch.Tensor) -> None:
    """Name the mistake if ``dev`` = z − μ, divided by each entry's ``sigma``, does not have
    standard deviation 1 per dimension, or does not grow with that entry's own σ: log|z − μ|
    must rise by ½ per unit of logvar (0 when σ comes from other rows)."""
    sigma, logvar = sigma.double(), logvar.double()
    x = logvar - logvar.mean(0)
    y = dev.abs().clamp_min(1e-12).log()
    slope = (x * (y - y.mean(0))).sum(0) / x.square().sum(0)  # ½ ± 0.01 when right
    if not (((dev / sigma).std(0) - 1).abs() <= SPREAD_TOL).all():
        # each named mistake must fit both the spread (as tight as the right answer) and the
        # rate at which log|z − μ| rises with logvar: 1 for σ², −½ for 1/σ, ¼ for √σ (a
        # constant factor such as σ/√2 changes the spread, not the rate, and fits none)
        wrong = [(sigma.square(), 1.0, "exp(logvar) is the variance σ², not the standard "
                  "deviation σ that scales the noise — logvar is log σ²: what gives σ?"),
                 (logvar.abs(), None, "logvar was used as the standard deviation itself; it "
                  "is log σ²"),
                 (1 / sigma, -0.5, "your spread is 1/σ — check the sign in the exponent"),
                 (sigma.sqrt(), 0.25, "your spread is √σ — check the factor in the exponent")]
        for spread, rate, message in wrong:
            if ((((dev / spread).std(0) - 1).abs() <= SPREAD_TOL).all()
                    and (rate is None or ((slope - rate).abs() <= 0.1).all())):
                raise _Problem(message)
    if ((slope - 0.5).abs() > 0.1).any():
        # log|z − μ| rises by 1 per unit of logvar when the noise is scaled by σ² (times any
        # constant, e.g. ½σ²), by 2 for σ⁴, by −½ for 1/σ and by ¼ for √σ; 0 when σ is left
        # out (z − μ is then ε itself, spread 1) or comes from other rows
        if ((slope.abs() <= 0.1).all()
                and ((dev.std(0) - 1).abs() <= SPREAD_TOL).all()):
            raise _Problem("z − μ does not grow with σ at all: it is the noise ε alone — the "
                           "noise must be multiplied by σ, the standard deviation that logvar "
                           "gives")
        # (1/σ and √σ are named above, where the spread fits them too: a clamped σ can
        # share their rate)
        named = [(2.0, "z − μ grows like σ⁴, not σ: exp(2·logvar) is σ⁴ — logvar is log σ²: "
                  "what gives σ?"),
                 (1.0, "z − μ grows like σ², not σ: exp(logvar) is the variance σ² — "
                  "logvar is log σ²: what gives σ?")]
        for rate, message in named:
            if ((slope - rate).abs() <= 0.1).all():
                raise _Problem(message)
        raise _Problem(f"the spread of z does not follow each entry's own σ over the whole "
                       f"range of logvar — is σ clamped or squashed, or taken from other rows? "
                       f"Row i of z must use row i of logvar {OWN_ROW}")
    if not (((dev / sigma).std(0) - 1).abs() <= SPREAD_TOL).all():
        scale = float((dev / sigma).std(0).mean())
        raise _Problem(f"z has the wrong spread — z − μ is about {scale:.3g}·σ·ε, and its "
                       "standard deviation per dimension must be σ, where logvar = log σ²")


def _name_offset(dev: torch.Tensor, sigma: torch.Tensor) -> None:
    """Name σ added to the noise instead of multiplied (z = μ + ε + σ), or a constant added to
    z: z = μ + c + σ·ε has z − μ − c, divided by σ, centred on 0
    in every dimension, with c the mean of z − μ weighted by 1/σ² (the least-squares estimate
    of a constant under noise σ·ε; a mean-0 ε gives c = 0 ± 0.01 here)."""
    added = dev - sigma  # z = μ + ε + σ: standard normal once σ is taken off
    if ((added.mean(0) / added.std(0)).abs() < 0.05).all() and (
            (added.std(0) - 1).abs() < 0.05).all():
        raise _Problem("σ is added to the noise, not multiplied with it — the noise must scale "
                       "with σ")
    w = sigma.square().reciprocal()
    c = (dev * w).sum(0) / w.sum(0)
    e = (dev - c) / sigma
    if (c.abs() > 0.02).any() and ((e.mean(0) / e.std(0)).abs() < 0.05).all():
        raise _Problem(f"z is centred on μ plus a constant (about {float(c.mean()):.1g}) — "
                       "z = μ + σ·ε adds nothing else to μ")


def _seeded_draws(fn, mu: torch.Tensor, logvar: torch.Tensor, seed: int):
    """``fn(mu, logvar)`` run with torch's, numpy's and Python's global generators seeded, and
    the standard-normal draws of ``mu``'s shape each of those seeds gives first (torch's
    ``randn`` in float32 or float64, or transposed, or one row at a time; numpy's
    ``randn``/``standard_normal``/``normal(0, 1)``, whole or one row at a time); every
    generator's state is put back afterwards."""
    with torch.random.fork_rng(devices=[]), _other_generators_seeded(seed):
        torch.manual_seed(seed)
        z = _tensor(_call(fn, "fn(mu, logvar)", mu.clone(), logvar.clone()), "z")
    first_draws = (lambda: torch.randn(mu.shape),
                   lambda: torch.randn(mu.shape, dtype=torch.float64),
                   lambda: torch.randn(tuple(mu.shape)[::-1]).T,
                   lambda: torch.from_numpy(np.random.standard_normal(tuple(mu.shape))),
                   lambda: torch.stack([torch.randn(mu.shape[1:]) for _ in range(len(mu))]),
                   lambda: torch.from_numpy(np.stack([np.random.standard_normal(mu.shape[1:])
                                                      for _ in range(len(mu))])))
    draws = []
    for draw in first_draws:
        with torch.random.fork_rng(devices=[]), _other_generators_seeded(seed):
            torch.manual_seed(seed)
            draws.append(draw().double())
    return z, draws


def _noise_scale(fn, mu: torch.Tensor, logvar: torch.Tensor) -> None:
    """z − μ must be σ·ε exactly: not c·σ·ε with c near 1 (within the ±3.6 % the spread test
    allows), not σ·ε plus a small constant, not ε + σ, not ε standardised over the batch. Run
    ``fn`` with torch's and numpy's global generators seeded: ``torch.randn_like(mu)`` (or
    ``randn_like(σ)``, ``randn(mu.shape)``, numpy's ``randn``) then draws a known ε to compare
    with. A function that draws its noise another way is left to the statistical tests."""
    z, draws = _seeded_draws(fn, mu, logvar, seed=11)
    sigma = torch.exp(0.5 * logvar.double())
    dev = z.detach().double() - mu.double()
    e = dev / sigma
    flat = e.reshape(-1)
    match = [d for d in draws if torch.corrcoef(torch.stack([flat, d.reshape(-1)]))[0, 1] > 0.999]
    if not match:
        return  # not a seeded default draw: nothing exact to compare with
    eps = match[0]
    rest = dev - sigma * eps  # 0 (float rounding) when z = μ + σ·ε with this ε
    if rest.abs().max() < 1e-4 * (1 + dev.abs().max()):
        return
    standardised = (eps - eps.mean(0)) / eps.std(0)
    if (e - standardised).abs().max() < 1e-3:
        raise _Problem("ε is standardised over the batch (its mean and spread taken off) — "
                       "use each draw from N(0, 1) as it is; the rows must not depend on each "
                       "other")
    if (rest - rest.mean()).abs().max() < 1e-4 * (1 + dev.abs().max()):
        raise _Problem(f"z is centred on μ plus a constant ({float(rest.mean()):.3g}) — nothing "
                       "is added to μ besides the noise")
    if (dev - eps - sigma).abs().max() < 1e-4 * (1 + dev.abs().max()):
        raise _Problem("σ is added to the noise, not multiplied with it — the noise must scale "
                       "with σ")
    tiny = 1e-4 * (1 + float(dev.abs().max()))
    added = (rest / sigma)  # an offset in ε: z = μ + σ·(ε + k)
    if (added - added.mean()).abs().max() * sigma.max() < tiny:
        raise _Problem(f"a constant (about {float(added.mean()):.3g}) is added to ε — use each "
                       "draw from N(0, 1) as it is")
    big = eps.abs() > 0.5  # a constant added to σ: z = μ + (σ + k)·ε
    to_sigma = rest[big] / eps[big]
    if big.any() and (to_sigma - to_sigma.mean()).abs().max() < tiny / 0.5:
        raise _Problem(f"a constant (about {float(to_sigma.mean()):.3g}) is added to σ — σ is "
                       "exp(logvar / 2), with nothing added")
    c = float((e * eps).sum() / eps.square().sum())
    off = rest.abs() > 1e-4 * (1 + dev.abs().max())
    if off.any() and (eps[off].abs() > 2.5).all():
        raise _Problem("ε is changed where it is large (clipped, or redrawn?) — draw it from "
                       "N(0, 1) and use it as it is")
    if abs(c - 1) < 5e-3:
        raise _Problem(f"z − μ differs from σ·ε (by up to {float(rest.abs().max()):.2g}) "
                       "— check how σ is built from logvar: nothing added to σ or to the noise, "
                       "nothing clamped or squashed")
    raise _Problem(f"z − μ is {c:.3g}·σ·ε, not σ·ε — nothing else scales the noise: check how "
                   "σ is built from logvar")


def _not_stratified(e: torch.Tensor) -> None:
    """Independent draws scatter around the normal distribution: the largest gap between the
    empirical distribution of each dimension's ε over the batch and N(0, 1) is about
    0.87/√n (Kolmogorov), below 0.2/√n with probability about 1e-11. Noise spread over the
    batch by design (one draw per stratum, quasi-random points) sits far closer."""
    n = e.shape[0]
    u = torch.special.ndtr(e.double()).sort(0).values
    expected = (torch.arange(n, dtype=torch.float64) + 0.5).unsqueeze(1) / n
    gap = (u - expected).abs().max(0).values * math.sqrt(n)
    if (gap < 0.2).any():
        raise _Problem("ε is spread over the batch too evenly (stratified or quasi-random) — the "
                       "rows must not depend on each other: one independent standard-normal "
                       "draw per entry")


def _reparam_large_sample(fn, rows: int = 100_000) -> None:
    """At μ = 0 and σ = 1, ``rows`` × 3 draws of z must look standard normal to a tighter eye
    than the 30,000 of the first test: each dimension's standard deviation 1 within 0.012
    (5.4 standard errors; a scale of 1.02 is 9 away), excess kurtosis 0 within 0.05 (5.6
    standard errors; a sum of 12 uniforms has −0.1), and a mean per dimension that is not
    exactly 0 nor a spread exactly 1 (noise centred or rescaled over the batch has them to
    rounding) but within 0.016 of 0 (5 standard errors: a normal sample's mean has standard
    error 0.003, so noise with a mean of 0.04 is 13 away)."""
    mu, logvar = torch.zeros(rows, 3), torch.zeros(rows, 3)
    z = _tensor(_call(fn, "fn(mu, logvar)", mu, logvar), "z").detach().double()
    where = f"with μ = 0 and σ = 1 (logvar = 0) in {rows:,} rows"
    if (z.mean(0).abs() < 1e-6).all() or ((z.std(0) - 1).abs() < 1e-6).all() or abs(
            float(z.std()) - 1) < 1e-7:  # an honest draw: each about 1e-11 likely
        raise _Problem(f"{where}, z has a mean of exactly 0 or a spread of exactly 1 — ε is "
                       "centred or rescaled over the batch; use each draw from N(0, 1) as it is")
    centre = z.mean(0)
    if (centre.abs() > 0.016).any():
        raise _Problem(f"{where}, z's mean per dimension is "
                       f"{', '.join(f'{v:.3f}' for v in centre.tolist())}, not 0 — ε must have "
                       "mean 0, and z = μ + σ·ε adds nothing else to μ")
    spread = z.std(0)
    if ((spread - 1).abs() > 0.012).any():
        raise _Problem(f"{where}, z's standard deviation per dimension is "
                       f"{', '.join(f'{v:.3f}' for v in spread.tolist())}, not 1 — nothing "
                       "else may scale the noise: check how σ is built from logvar")
    kurtosis = float((z ** 4).mean() / (z ** 2).mean() ** 2 - 3)
    if abs(kurtosis) > 0.05:
        raise _Problem(f"{where}, z's tails are not those of a normal (excess kurtosis "
                       f"{kurtosis:.2f}, where N(0, 1) has 0) — draw ε with torch.randn_like, "
                       "not an approximation")


def _reparam_gradient(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> None:
    """The gradient of a random weighting ``(z * w).sum()`` (a third of the weights 0) must be
    ``w`` for ``mu`` and ``½·w·(z − μ)`` for ``logvar``: each row's z reaches its own μ and
    logvar only, so nothing reaches an entry whose weight is 0."""
    if not z.requires_grad:
        raise _Problem("gradients don't reach μ and logvar — build z from them directly "
                       "(no .detach(), no .sample(); that is the trick)")
    g = torch.Generator().manual_seed(3)
    w = torch.randn(z.shape, generator=g) * (torch.rand(z.shape, generator=g) > 1 / 3)
    got = torch.autograd.grad((z * w).sum(), [mu, logvar], allow_unused=True)
    got = [torch.zeros_like(x) if d is None else d for d, x in zip(got, (mu, logvar), strict=True)]
    want = [w, 0.5 * w * (z.detach() - mu.detach())]
    if all(_close(d, v, atol=1e-3) for d, v in zip(got, want, strict=True)):
        return
    if any((d[w == 0].abs() > 1e-6).any() for d in got):
        raise _Problem(f"gradients reach the wrong rows: one row of z moves other rows' μ or "
                       f"logvar — each row's z must use its own μ and σ only {OWN_ROW}")
    for d, name in zip(got, ("μ", "logvar"), strict=True):
        if d.abs().max() <= 1e-6 and any(o.abs().max() > 1e-6 for o in got):
            raise _Problem(f"no gradient reaches {name} (the other input gets its gradient) — "
                           f"build z from {name} itself, with no .detach() or .data on it")
    if any(d.abs().max() > 1e-6 for d in got) and _close(got[0], want[0], atol=1e-3):
        raise _Problem("∂z/∂μ is 1, but the gradient to logvar is not ½·(z − μ) — is σ built "
                       "from logvar exactly (nothing added, clamped or squashed), and is "
                       "nothing added to z besides μ + σ·ε?")
    if any(d.abs().max() > 1e-6 for d in got):  # gradients arrive, with the wrong values
        raise _Problem("gradients reach μ and logvar, but with the wrong values (∂z/∂μ must be "
                       "1) — is σ built from logvar exactly, with nothing added, clamped or "
                       "squashed?")
    raise _Problem("the values are right but gradients don't flow through μ and σ — build z "
                   "from mu, logvar and the noise with tensor operations yourself "
                   "(torch.normal and .sample() pass no gradient)")


# the notebook's models have 2 and 20 latent dimensions; a batch of one and one latent too
REPARAM_SIZES = ((7, 2), (5, 20), (1, 2), (4, 1))


def _reparam_other_sizes(fn) -> None:
    """z must have the shape of ``mu`` for other batch sizes and numbers of latents than the
    10,000 × 3 of the main test, and z − μ must scale with each entry's σ (from about 0.005 to
    150 here, so ε = (z − μ)/σ stays within ±6 only when it does)."""
    g = torch.Generator().manual_seed(6)
    for n, dims in REPARAM_SIZES:
        mu, logvar = torch.randn(n, dims, generator=g), 4 * torch.randn(n, dims, generator=g)
        where = f"with mu of shape ({n}, {dims}) ({dims} latent dimensions)"
        try:
            z = _tensor(_call(fn, "fn(mu, logvar)", mu.clone(), logvar.clone(),
                              forbid=frozenset({TORCH_DISTRIBUTIONS}), refusal=NO_DISTRIBUTIONS),
                        "z")
        except _Problem as p:
            e = p.__cause__
            if isinstance(e, Exception):  # the student's function raised
                raise _Problem(f"right for 3 latent dimensions, but {where} your function "
                               f"raised {type(e).__name__}: {_first_line(e)} — take every size "
                               "from mu, with no batch size or number of latents written in") \
                    from e
            raise _Problem(f"{where}, {p}") from p
        if z.shape != mu.shape:
            raise _Problem(f"right for 3 latent dimensions, but {where} z has shape "
                           f"{tuple(z.shape)} — z has the shape of mu: take every size from "
                           "mu, with no batch size or number of latents written in, and keep "
                           "both axes (no squeeze)")
        e = (z.detach().double() - mu) / torch.exp(0.5 * logvar.double())
        if not (torch.isfinite(e).all() and e.abs().max() < 6
                and (e.numel() < 10 or e.std() > 0.3)):  # a spread from 10 draws up
            raise _Problem(f"right for 3 latent dimensions, but not {where}: z − μ must scale "
                           "with each entry's own σ, however small or large (here from about "
                           "0.005 to 150) — is a number of latents written in, or logvar "
                           "clamped?")
    _reparam_wide_logvar(fn)


def _reparam_wide_logvar(fn) -> None:
    """log|z − μ| − ½·logvar = log|ε| must not depend on logvar, also far out (logvar from −16
    to 16, σ from 0.0003 to 3,000): a clamped logvar shifts it by ½·(clamped − true), so its
    mean over the entries with logvar > 6 and over those with logvar < −6 differ by about 5
    nats for a clamp at ±6; right answers differ by 0 ± 0.05."""
    g = torch.Generator().manual_seed(7)
    mu, logvar = torch.randn(4000, 4, generator=g), 32 * torch.rand(4000, 4, generator=g) - 16
    z = _tensor(_call(fn, "fn(mu, logvar)", mu.clone(), logvar.clone(),
                      forbid=frozenset({TORCH_DISTRIBUTIONS}), refusal=NO_DISTRIBUTIONS), "z")
    dev = (z.detach().double() - mu).abs()
    r = dev.clamp_min(1e-300).log() - 0.5 * logvar.double()
    seen = dev > 0  # in float32 a tiny σ·ε can round z to μ exactly: log 0 says nothing of σ
    shift = float(r[(logvar > 6) & seen].mean() - r[(logvar < -6) & seen].mean())
    # the outermost sixteenths on their own: E log|ε| = −(γ + log 2)/2 = −0.635 for a standard
    # normal ε, standard error about 0.035 over the ~1,000 entries of each (a clamp at ±11 moves
    # the mean there by about 2, one at ±14 by about 0.5)
    ends = [float(r[part & seen].mean()) for part in (logvar > 14, logvar < -14)]
    if not all(math.isfinite(m) and abs(m + 0.635) <= 0.2 for m in ends):
        shift = math.inf
    if not math.isfinite(shift) or abs(shift) > 0.3:
        raise _Problem("right on moderate log-variances but not far out (logvar from −16 to 16, "
                       "σ from about 0.0003 to 3,000): z − μ must scale with each entry's own σ "
                       "there too — is logvar clamped, or σ capped?")


def _mig_inputs() -> tuple[np.ndarray, np.ndarray]:
    """A made-up ``mi`` (4 latents × 3 factors, nats) and ``entropy`` (3,) = log 3, log 5, log 8,
    chosen so that every wrong variant below gives a different number."""
    mi = np.array([[0.9, 0.1, 0.3], [0.2, 1.2, 0.5], [0.4, 0.9, 1.6], [0.1, 0.2, 1.0]])
    return mi, np.log([3.0, 5.0, 8.0])


def _mig_more_inputs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Made-up ``(where, mi, entropy)`` beyond the 4 × 3 one, each I(z_j; v_k) ≤ H(v_k): 7
    latents × 5 factors, 6 × 4 with two latents tied for the top of the second factor, and
    3 × 5 (fewer latents than factors: a function that transposes mi when it is wide fails)."""
    other = np.array([[0.9, 0.1, 0.2, 0.0, 0.3], [0.2, 1.1, 0.1, 0.4, 0.2],
                      [0.4, 0.3, 1.3, 0.2, 0.1], [0.1, 0.8, 0.5, 1.5, 0.6],
                      [0.3, 0.2, 0.9, 0.7, 1.9], [0.6, 0.4, 0.3, 0.1, 1.2],
                      [0.0, 0.5, 0.2, 1.0, 0.4]])
    tied = np.array([[1.0, 0.2, 0.1, 0.3], [0.3, 0.9, 0.2, 0.1], [0.1, 0.9, 0.4, 0.2],
                     [0.2, 0.5, 1.2, 0.6], [0.4, 0.1, 0.7, 1.4], [0.0, 0.3, 0.1, 0.8]])
    few = np.array([[1.0, 0.2, 0.6, 0.1, 0.3], [0.3, 0.9, 0.2, 1.2, 0.1],
                    [0.1, 0.4, 1.1, 0.5, 0.8]])  # fewer latents than factors
    return [("a made-up 7 × 5 matrix (7 latents, 5 factors)", other,
             np.log([3.0, 4.0, 5.0, 6.0, 8.0])),
            ("a made-up 6 × 4 matrix", tied, np.log([4.0, 3.0, 5.0, 6.0])),
            ("a made-up 3 × 5 matrix (3 latents, 5 factors)", few,
             np.log([3.0, 4.0, 5.0, 6.0, 8.0]))]


def _mig_tie_message(out: float, mi: np.ndarray, entropy: np.ndarray,
                     want: float, where: str) -> str | None:
    """The hint for a MIG that drops every copy of a factor's largest I(z_j; v_k) (so a tie
    for the top leaves a gap where there is none), if ``out`` is that; else None."""
    top = mi.max(axis=0)
    if not (mi == top).sum(axis=0).max() > 1:
        return None
    below = np.where(mi < top, mi, -np.inf).max(axis=0)  # the largest value under the top
    if not math.isclose(out, float(((top - below) / entropy).mean()), rel_tol=1e-4):
        return None
    return (f"got {out:.4f} instead of {want:.4f} on {where}, where two latents tie for the "
            "top of a factor — with a tie, the second-largest I(z_j; v_k) equals the largest: "
            "does your function drop every copy of the maximum?")


def _mig_variants(mi: np.ndarray, entropy: np.ndarray):
    """Known wrong MIGs from ``mi`` (L, K) and ``entropy`` (K,), with what to say."""
    top = np.sort(mi, axis=0)[::-1]          # each factor's latents, most informative first
    gap = top[0] - top[1]
    rows = np.sort(mi, axis=1)[::-1]         # sorted within each latent: the wrong axis
    low = np.sort(mi, axis=0)
    axis = ("you ranked along the wrong axis — mi is (latents, factors): rank the latents of "
            "each factor, i.e. sort each column (axis=0)")
    return [
        ((gap / entropy).sum(), "you summed over the factors; MIG is their mean"),
        (gap.mean(), "not normalised — divide each factor's gap by that factor's entropy H(v_k)"),
        ((top[0] / entropy).mean(), "that is the top latent's share alone; MIG takes the gap "
                                    "between the largest and the second largest I(z_j; v_k)"),
        (top[0].mean(), "that is the top latent's information alone; MIG takes the gap between "
                        "the two most informative latents, divided by H(v_k)"),
        (((top[0] - low[0]) / entropy).mean(), "you subtracted the smallest I(z_j; v_k); "
                                               "subtract the second largest"),
        (((low[0] - low[1]) / entropy).mean(), "np.sort sorts in ascending order — the two "
                                               "largest values are the last two, not the first"),
        (((rows[0] - rows[1]) / entropy).mean(), axis),
        ((gap / entropy.sum()).mean(), "divide each factor's gap by its own entropy, not by "
                                       "the sum of all entropies"),
    ]


def _is_number(out) -> bool:
    """Whether ``out`` is one real number: a Python or numpy one, or a 0-d array or tensor (what
    the notebook's ``f"{m:.3f}"`` can format; ``[m]`` or ``np.array([m])`` it cannot)."""
    if isinstance(out, (np.ndarray, torch.Tensor)):
        return out.ndim == 0
    return isinstance(out, (numbers.Real, decimal.Decimal))  # a Decimal is no numbers.Real


def _mig_of(out, per_factor: np.ndarray) -> float:
    """The student's MIG as a float; a per-factor array, a number inside a container or a
    non-number is a named mistake."""
    if out is None:
        raise _Problem("got None — did you forget `return`?")
    if isinstance(out, (str, bytes)):
        raise _Problem(f"return one number (a float), not text; got {out!r}")
    try:
        value = np.asarray(out.detach() if isinstance(out, torch.Tensor) else out, float)
    except (TypeError, ValueError) as e:
        raise _Problem(f"return one number (a float); got {_describe(out)}") from e
    if value.shape == per_factor.shape and np.allclose(value, per_factor, rtol=1e-3):
        raise _Problem(f"you returned the {len(per_factor)} per-factor gaps; MIG is their mean")
    if value.size != 1:
        raise _Problem(f"return one number, the mean over factors; got shape {value.shape}")
    if not _is_number(out):  # [m], np.array([m]), torch.tensor([m]): the notebook's :.3f fails
        held = f" of shape {value.shape}" if value.ndim else ""
        raise _Problem(f"return one number, e.g. float(...); got {_describe(out)}{held} — the "
                       "notebook formats the result with :.3f, which needs a number")
    return float(value.reshape(()))


def _call_mig(fn, mi: np.ndarray, entropy: np.ndarray) -> float:
    """The student's MIG of ``mi`` and ``entropy`` (copies), errors named for this exercise."""
    ranked = np.sort(mi, axis=0)[::-1]
    given_mi, given_entropy = mi.copy(), entropy.copy()
    try:
        out = _call(fn, "fn(mi, entropy)", given_mi, given_entropy)
    except _Problem as p:
        if "broadcast" in str(p.__cause__):
            raise _Problem(f"shapes don't line up: mi is (latents, factors) = {mi.shape}, "
                           f"entropy {entropy.shape} — rank the latents of each factor, i.e. "
                           "sort each column (axis=0)") from p
        raise
    if not (np.array_equal(given_mi, mi) and np.array_equal(given_entropy, entropy)):
        raise _Problem("your function changes the arrays it is given (an in-place operation "
                       "such as mi.sort() or mi /= entropy) — the caller still needs them: "
                       "np.sort(mi, axis=0) and mi / entropy return new arrays")
    return _mig_of(out, (ranked[0] - ranked[1]) / entropy)


def _mig_random_input() -> tuple[str, np.ndarray, np.ndarray]:
    """A matrix drawn anew on every check (2 to 12 latents, 2 to 7 factors, each
    I(z_j; v_k) ≤ H(v_k)), so a table of the fixed matrices' answers does not pass."""
    rng = random.Random()
    n_latents, n_factors = rng.randint(2, 12), rng.randint(2, 7)
    entropy = np.log([rng.randint(2, 40) for _ in range(n_factors)])
    mi = np.array([[rng.random() * h for h in entropy] for _ in range(n_latents)])
    return (f"a {n_latents} × {n_factors} matrix drawn at random", mi, entropy)


def _mig_not_rounded(got: float, want: float) -> None:
    """Name a right MIG rounded before it is returned (``round(mig, 4)``)."""
    for digits in range(1, 7):
        if got == round(want, digits) != 0:
            raise _Problem(f"got {got!r}, the MIG {want:.8f} rounded to {digits} decimals — "
                           "return it unrounded; the notebook rounds it only when it prints")


def _mig_other_sizes(fn) -> None:
    """The MIG must be right for other numbers of latents and factors than the 4 × 3 and 5 × 3
    matrices (so a 3 written in shows), where two latents tie for a factor's top, and for a
    matrix drawn anew on every check."""
    for where, mi, entropy in [*_mig_more_inputs(), _mig_random_input()]:
        top = np.sort(mi, axis=0)[::-1]
        gaps = (top[0] - top[1]) / entropy
        want, got = float(gaps.mean()), _call_mig(fn, mi, entropy)
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
            continue
        _mig_not_rounded(got, want)
        if math.isclose(got, float(gaps.sum() / 3), rel_tol=1e-4):
            raise _Problem(f"got {got:.4f} instead of {want:.4f} on {where}: you divided by "
                           "3, the number of factors of the first matrices — average over "
                           "however many factors mi has")
        if not math.isclose(_call_mig(fn, mi[::-1].copy(), entropy), got, rel_tol=1e-4,
                            abs_tol=1e-6):  # the same matrix, its latents in reverse order
            raise _Problem(f"{got:.6f} instead of {want:.6f} on {where}, and another answer with "
                           "its latents in reverse order — the MIG cannot depend on their order: "
                           "when a new largest value appears, the old largest becomes the second")
        raise _Problem(_mig_tie_message(got, mi, entropy, want, where)
                       or f"right on the 4 × 3 and 5 × 3 matrices but {got:.6f} instead of "
                       f"{want:.6f} on {where} — does your function assume a number of "
                       "latents or factors?")
    for where, mi, entropy in _mig_more_inputs():  # their latents reversed: runners-up first
        flipped = mi[::-1].copy()
        top = np.sort(flipped, axis=0)[::-1]
        want, got = float(((top[0] - top[1]) / entropy).mean()), _call_mig(fn, flipped, entropy)
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
            raise _Problem(f"right on {where} but {got:.6f} instead of {want:.6f} with its latents "
                           "in reverse order — the MIG cannot depend on their order: when a new "
                           "largest value appears, the old largest becomes the second")


def _mig_known_code():
    """``metrics.mutual_info_gap`` of a code whose answer is known: 60 images, 3 factors, 5
    latents — z₁ = factor 1, z₂ = factor 2, z₃ = factor 2 too (a shared factor), z₄ = factor 3
    with a coarse copy in z₅. Its ``mig`` is the answer."""
    i = np.arange(60)
    v = np.stack([i % 3, i % 4, i % 5], axis=1)
    codes = np.stack([v[:, 0], v[:, 1], v[:, 1], v[:, 2], v[:, 2] // 2], axis=1).astype(float)
    return metrics.mutual_info_gap(codes, v)


# --------------------------------------------------------------------------------------------
# The checkers


class Checks:
    """Self-checking exercises. ``check.<name>(your_function)`` prints one line and returns
    True (passed) or False; it never raises."""

    @staticmethod
    @_checker("z, a tensor shaped like mu")
    def reparameterize(fn):
        """Check ``fn(mu, logvar) -> z``: one sample of N(μ, σ²) per row (``logvar`` = log σ²),
        with gradients reaching ``mu`` and ``logvar``."""
        mu0, logvar0 = _reparam_inputs()
        sigma = torch.exp(0.5 * logvar0)
        mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
        z = _tensor(_call(fn, "fn(mu, logvar)", mu, logvar,
                          forbid=frozenset({TORCH_DISTRIBUTIONS}), refusal=NO_DISTRIBUTIONS), "z")
        _inputs_kept((mu, logvar), (mu0, logvar0))
        if z.shape != mu.shape:
            raise _Problem(f"z should have the shape of mu {tuple(mu.shape)}; "
                           f"got {tuple(z.shape)}")
        _finite(z, "σ is finite for every logvar; don't take a log or sqrt of logvar")
        again = _tensor(_call(fn, "fn(mu, logvar)", mu0.clone(), logvar0.clone()), "z")
        zd = z.detach().double()
        if _close(zd, mu0.double()):
            raise _Problem("z equals μ — no noise was added: a sample of N(μ, σ²) varies "
                           "around μ")
        stuck = int((zd == mu0.double()).sum())
        if stuck > 3:  # σ ≥ 0.5 here: an honest draw leaves an entry exactly at μ about once
            # in 10 million (|ε| below float32's rounding of μ)
            raise _Problem(f"z equals μ exactly in {stuck} of {z.numel():,} entries — every "
                           "entry needs its own noise, none left out or masked")
        third = _tensor(_call(fn, "fn(mu, logvar)", mu0.clone(), logvar0.clone()), "z")
        if (torch.equal(z.detach(), again.detach()) or torch.equal(z.detach(), third.detach())
                or torch.equal(again.detach(), third.detach())):
            raise _Problem("z repeats from one call to another — draw a fresh ε inside the "
                           "function each time it runs")
        dev = zd - mu0.double()
        e = dev / sigma.double()  # the noise the function drew, if z = μ + σ·ε
        if (e.std(0) < 1e-4).any():
            raise _Problem("every image got the same ε — ε needs the shape of μ, one draw per "
                           "image and dimension")
        if (zd.mean(0).abs() < 0.1).all():
            raise _Problem("z is centred on 0, not on μ — add μ")
        shift = e.mean(0) / e.std(0)  # uniform ε on [0, 1) gives √3 in every dimension
        if ((shift - math.sqrt(3)).abs() < 0.1).all():
            raise _Problem("ε looks uniform on [0, 1) (torch.rand_like) — it must be standard "
                           "normal: torch.randn_like")
        _own_mu(dev, mu0.double())
        if (shift.abs() > 0.05).any():
            _noise_scale(fn, mu0, logvar0)  # exact where torch's draw can be rebuilt: names more
            _name_offset(dev, sigma.double())
            raise _Problem("z is not centred on μ — ε must have mean 0 (a standard normal)")
        _check_spread(dev, sigma, logvar0)
        _noise_scale(fn, mu0, logvar0)  # an exact comparison, where torch's draw can be rebuilt
        _same_spread_everywhere(e)
        if not _normal_tails(e):
            raise _Problem("ε has mean 0 and variance 1 but is not normally distributed — draw "
                           "it from N(0, I) with torch.randn_like")
        corr = torch.corrcoef(e.T)
        if (corr - torch.eye(3, dtype=corr.dtype)).abs().max() > 0.05:  # 5 standard errors
            raise _Problem("the latent dimensions share one ε — ε needs the shape of μ "
                           "(one draw per dimension)")
        _independent_rows(e)
        _not_stratified(e)
        _reparam_large_sample(fn)
        _reparam_gradient(z, mu, logvar)
        _reparam_other_sizes(fn)
        return "z = μ + σ·ε with fresh standard-normal ε, σ = exp(½·logvar), gradients flow"

    @staticmethod
    @_checker("one KL per image, a tensor of shape (N,)")
    def gaussian_kl(fn):
        """Check ``fn(mu, logvar) -> (N,)``: KL(N(μ, σ²) || N(0, I)) summed over dimensions."""
        mu, logvar = _gaussian_inputs()
        ref = losses.kl_divergence(mu, logvar)
        leaves = [mu.clone().requires_grad_(), logvar.clone().requires_grad_()]
        out = _tensor(_call(fn, "fn(mu, logvar)", *leaves, forbid=frozenset({TORCH_KL_FILE})),
                      "the KL per image")
        _inputs_kept(leaves, (mu, logvar))
        out, note = _per_image(out, ref, "one KL per image",
                               "sum over the latent dimensions (dim=1)")
        _finite(out, "logvar is log σ² and can be negative: σ² = exp(logvar); never take "
                     "log or sqrt of logvar")
        if not _close(out.detach(), ref):
            message = _match(out.detach(), _kl_variants(mu, logvar))
            if message:
                raise _Problem(message)
            if (out.detach() < -1e-6).any():
                eps = float(torch.expm1(-2 * out.detach()[0].double() / mu.shape[1]))
                with_eps = 0.5 * (mu ** 2 + logvar.exp() - 1
                                  - torch.log(logvar.exp() + eps)).sum(1)  # log(σ² + ε)
                if eps > 0 and _close(out.detach(), with_eps, rtol=1e-3, atol=1e-6):
                    raise _Problem(EPS_IN_LOG)
                raise _Problem("some KLs came out negative — a KL divergence is never negative; "
                               "check the signs")
            if abs(out[0].item()) > 1e-4:  # the first image's posterior is the prior itself
                raise _Problem(f"the KL of the prior from itself (μ = 0, logvar = 0) must be 0; "
                               f"yours gives {out[0].item():.3g} — check the constant terms")
            raise _Problem("the KL per image is off (though 0 for the prior itself) — "
                           "rederive one latent dimension's term from the notebook and check "
                           "how μ, σ² = exp(logvar) and log σ² = logvar each enter it")
        _same_gradient(out, leaves, losses.kl_divergence)
        _any_latent_size(fn)
        return "KL per image matches the closed form (and is 0 for the prior itself)" + note

    @staticmethod
    @_checker("−log p(x|z) per image, a tensor of shape (N,)")
    def bernoulli_reconstruction(fn):
        """Check ``fn(logits, x) -> (N,)``: Bernoulli −log p(x|z) in nats, summed over pixels."""
        logits, x = _image_inputs()
        ref = losses.bernoulli_nll_per_image(logits, x)
        leaf = logits.clone().requires_grad_()
        watch = {"forbid": TORCH_BCE_LOGITS, "refusal": NO_TORCH_BCE, "ops": TORCH_BCE_OPS}
        out = _tensor(_call(fn, "fn(logits, x)", leaf, x.clone(), **watch),
                      "the reconstruction term per image")
        out, note = _per_image(out, ref, "−log p(x|z) per image",
                               "sum over the pixels (flatten(1).sum(1))")
        _finite(out, "log(0) somewhere? the decoder gives logits, and sigmoid rounds to 0 or 1 "
                     f"on large ones: work with the logits directly ({IDENTITIES})")
        if not _close(out.detach(), ref, rtol=1e-4, atol=1e-2):
            message = _match(out.detach(), _bernoulli_variants(logits, x))
            if message:
                raise _Problem(message)
            raise _Problem("the values are off — the term is the binary cross-entropy between "
                           "the images and sigmoid(logits), summed over pixels")
        _same_gradient(out, [leaf], lambda lg: losses.bernoulli_nll_per_image(lg, x))
        _one_image(fn, watch=watch)  # torch's one-call BCE is refused on every input
        _stable_on_large_logits(fn, watch=watch)
        return ("binary cross-entropy on logits, summed over pixels, one number per image"
                + note)

    @staticmethod
    @_checker("the batch-mean loss, a scalar tensor")
    def vae_loss(fn):
        """Check ``fn(logits, x, mu, logvar, beta) -> scalar``: mean over the batch of
        reconstruction + β·KL, in nats per image."""
        logits, x = _image_inputs()
        mu, logvar = _gaussian_inputs()
        rec_ref = losses.bernoulli_nll_per_image(logits, x)
        kl_ref = losses.kl_divergence(mu, logvar)
        n = len(x)
        recs = [(rec_ref, None)] + _bernoulli_variants(logits, x)
        kls = [(kl_ref, None)] + _kl_variants(mu, logvar)
        # β above 8 too: exercise 1 of notebook 04 trains β = 16. Not L = 3: β·mean over latents
        # would equal the sum
        for beta in (2.5, 1.0, 0.25, 8.0, 16.0):
            leaves = [logits.clone().requires_grad_(), mu.clone().requires_grad_(),
                      logvar.clone().requires_grad_()]
            out = _tensor(_call(fn, "fn(logits, x, mu, logvar, beta)", leaves[0], x.clone(),
                                *leaves[1:], beta), "the loss")
            ref = losses.vae_loss(logits, x, mu, logvar, beta=beta).total
            if out.numel() != 1:
                if out.shape == (n,) and _close(out.detach().mean(), ref):
                    raise _Problem("you return one loss per image; average over the batch")
                raise _Problem(f"return one number (the batch mean); got shape "
                               f"{tuple(out.shape)}")
            out = out.reshape(())
            _finite(out, "check the KL (σ² = exp(logvar)) and compute the reconstruction from "
                         f"the logits directly ({IDENTITIES})")
            if _close(out.detach(), ref, rtol=1e-5, atol=1e-3):
                _same_gradient(out, leaves, lambda lg, m, lv, b=beta:
                               losses.vae_loss(lg, x, m, lv, beta=b).total)
                continue
            message = _match(out.detach(), _vae_loss_variants(recs, kls, beta, n * ref),
                             rtol=1e-5)
            if not message:
                _vae_loss_no_floor(fn)  # names a floor under the KL, if that is the mistake
            raise _Problem(message or f"with β = {beta:g} the loss is off — it is the batch "
                           "mean of reconstruction + β·KL; check the terms with "
                           "check.bernoulli_reconstruction and check.gaussian_kl")
        _vae_loss_beta_zero(fn)
        _vae_loss_no_floor(fn)
        _vae_loss_other_sizes(fn)
        _vae_loss_wide_latents(fn)
        _one_image(fn, loss=True)
        rows = torch.arange(len(LARGE_LOGITS)) % len(mu)  # one code per image there
        mu_n, logvar_n = mu[rows], logvar[rows]
        kl_n = losses.kl_divergence(mu_n, logvar_n).mean()  # outside the watched call
        _stable_on_large_logits(lambda lg, xb: fn(lg, xb, mu_n, logvar_n, 1.0) - kl_n,
                                mean=True)
        return "batch mean of reconstruction + β·KL, for β = 0, 0.25, 1, 2, 2.5, 8 and 16"

    @staticmethod
    @_checker("one score per image, a tensor of shape (N,)")
    def donutness(fn):
        """Check ``fn(x) -> (N,)``: share of the ink on the donut map minus share on the stick
        map, for ``x`` of shape ``(N, 1, 28, 28)`` in [0, 1]. Known answers: the donut map
        scores high, the stick map low, every score lies in [-1, 1], a blank image gives 0."""
        donut, stick = anchor.donut_map(), anchor.stick_map()
        g = torch.Generator().manual_seed(2)
        noise = torch.rand(28, 28, generator=g)
        x = torch.stack([donut, stick, 0.5 * donut, ((donut + stick) > 0).float(), noise,
                         0.8 * noise * stick + 0.2 * donut,
                         stick * (1 - donut)]).unsqueeze(1)  # the stick off the ring: −1
        ref = anchor.donutness(x)
        out = _scores_of_a_copy(fn, x)
        out, note = _per_image(out, ref, "one score per image", "reduce each image to one number")
        _finite(out, "divide by each image's total ink")
        if not _close(out, ref, rtol=0.0, atol=1e-3):
            message = _match(out, _donut_variants(x, ref))
            if message:
                raise _Problem(message)
            if (out.detach().abs() > 1 + 1e-4).any():
                raise _Problem("some scores lie outside [-1, 1] — both terms are shares of the "
                               "image's own ink, each between 0 and 1")
            if not (out[0].item() > 0.5 and out[1].item() < -0.2):
                raise _Problem(f"the donut map itself should score high and the stick map low; "
                               f"yours give {out[0].item():.2f} and {out[1].item():.2f}")
            raise _Problem("the scores are off — compare yours with the notebook's definition "
                           "on the donut map alone and on the stick map alone")
        blank = _scores_of_a_copy(fn, torch.zeros(2, 1, 28, 28))
        _finite(blank, "a blank image gives 0/0 — add a small eps (1e-8) to the total ink")
        blank = blank.detach().reshape(-1)
        if blank.shape != (2,) or (blank != 0).any():
            raise _Problem(f"a blank image has no ink on either map, so its score must be 0; "
                           f"two blank images gave {blank.tolist()}")
        _donut_edge_cases(fn)
        return "donut share − stick share of each image's ink, and 0 for a blank image" + note

    @staticmethod
    @_checker("a list of shapes, e.g. [(1, C, H, W), ...]")
    def conv_encoder_shapes(fn):
        """Check ``fn(size) -> list``: the output shape of each conv layer of ``ConvVAE``'s
        encoder for one ``(1, 1, size, size)`` image, for each size of ``ENCODER_SIZES`` (28
        first, then sizes where rounding other than ⌊·⌋, or a 28 written in, goes wrong).

        The sizes are worked out from kernel and stride: building or running a conv layer, or
        any op that slides a window (conv, correlation, pooling, unfold), fails; printing the
        model to read kernel and stride is fine."""
        _takes_a_size(fn)
        encoder, size = ConvVAE().encoder, ENCODER_SIZES[0]
        _compare_shapes(_call(fn, "fn(size)", size, forbid=VAELAB_MODELS, windows=True),
                        _layer_shapes(encoder, torch.zeros(1, 1, size, size), nn.Conv2d),
                        (1, 1, size, size), "conv", ENCODER_RULE, "encoder",
                        where=f"for size={size}, ")
        _encoder_other_sizes(fn, encoder)
        return (f"shapes after each conv layer, (N, C, H, W), for {size}×{size} images and for "
                "other sizes (fixed ones and two drawn at random)")

    @staticmethod
    @_checker("a list of shapes, e.g. [(1, C, H, W), ...]")
    def conv_decoder_shapes(fn):
        """Check ``fn() -> list``: the output shape of each transposed conv of ``ConvVAE``'s
        decoder for one code (its input is the code reshaped to ``(1, 1024, 1, 1)``).

        The sizes are worked out from kernel and stride: building or running a conv layer, or
        any op that slides a window (conv, correlation, pooling, unfold), fails; printing the
        model to read kernel and stride is fine."""
        model = ConvVAE()
        start = model.from_code(torch.zeros(1, model.latent_dim)).view(-1, 1024, 1, 1)
        expected = _layer_shapes(model.decoder, start, nn.ConvTranspose2d)
        _compare_shapes(_call(fn, "fn()", forbid=VAELAB_MODELS, windows=True), expected,
                        tuple(start.shape), "transposed conv",
                        "out = (in − 1) · stride + kernel (no padding)", "decoder")
        return "shapes after each transposed conv layer, (N, C, H, W)"

    @staticmethod
    @_checker("the MIG, one number")
    def mig_from_mi(fn):
        """Check ``fn(mi, entropy) -> float``: ``mi`` ``(L, K)`` numpy, I(z_j; v_k) in nats of
        each latent (rows) with each factor (columns); ``entropy`` ``(K,)``, H(v_k). MIG is the
        mean over factors of (largest − second largest I(z_j; v_k)) / H(v_k)."""
        mi, entropy = _mig_inputs()
        top = np.sort(mi, axis=0)[::-1]
        ref = float(((top[0] - top[1]) / entropy).mean())
        out = _call_mig(fn, mi, entropy)
        if not math.isfinite(out):
            raise _Problem(f"got {out} — divide by the entropies (all positive), nothing else")
        if not math.isclose(out, ref, rel_tol=1e-4, abs_tol=1e-6):
            _mig_not_rounded(out, ref)
            for value, message in _mig_variants(mi, entropy):
                if math.isclose(out, float(value), rel_tol=1e-4, abs_tol=1e-6):
                    raise _Problem(message)
            raise _Problem(f"got {out:.4f} on a made-up 4 × 3 matrix — for each factor (column) "
                           "take the largest and the second-largest I(z_j; v_k), divide their "
                           "difference by H(v_k), then average over the factors")
        known = _mig_known_code()
        got = _call_mig(fn, known.mi, known.entropy)
        where = "metrics.mutual_info_gap's 5 × 3 matrix of a small code"
        if not math.isclose(got, known.mig, rel_tol=1e-4, abs_tol=1e-6):
            _mig_not_rounded(got, known.mig)
            raise _Problem(_mig_tie_message(got, known.mi, known.entropy, known.mig, where)
                           or f"right on the made-up matrix but {got:.6f} instead of "
                           f"{known.mig:.6f} on {where} — does your function assume a shape or "
                           "a value?")
        _mig_other_sizes(fn)
        return ("the top-two gap of each factor over its entropy, averaged over factors — "
                f"{known.mig:.3f}, as metrics.mutual_info_gap says")

    def __repr__(self) -> str:
        names = ", ".join(n for n in vars(Checks) if not n.startswith("_"))
        return f"check.<name>(your_function), one of: {names}"


# the encoder exercise's image sizes: 28 first, then sizes where rules that happen to give 28's
# shapes go wrong: round() (half to even, so round(12.5) = 12) at all four; ⌊n/s⌋ − ⌊k/s⌋ + 1 at
# 31, 32 and 33 (it is off only where the last layer's input is even); and a 28 written in.
# Rounding up or half up, and ⌊n/s⌋ − 1, are wrong at 28 already; 35 (16 → 7 → 3) catches a
# last layer written in as 2. Every size from 18 up gives each layer an output.
ENCODER_SIZES = (28, 27, 31, 32, 33, 35)
ENCODER_RULE = "out = ⌊(in − kernel) / stride⌋ + 1 (no padding)"


def _takes_a_size(fn) -> None:
    """The encoder exercise calls ``fn(size)``: say how to write a function that takes none (the
    notebook's first form of the exercise) or takes it by keyword only."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
        return
    try:
        signature.bind(ENCODER_SIZES[0])
    except TypeError:
        raise _Problem("the checker calls your function with the image's size, for 28 and "
                       "other sizes — write `def conv_encoder_shapes(size=28):` and use `size` "
                       "where you had 28") from None


def _encoder_other_sizes(fn, encoder: nn.Sequential) -> None:
    """The encoder's shapes must be right for the other sizes of ``ENCODER_SIZES`` too, so that
    rounding other than ⌊·⌋ or a 28 written in shows, and for two sizes drawn anew on every
    check (one from 22 to 199, one from 200 to 4,095)."""
    first = ENCODER_SIZES[0]
    # two more sizes drawn afresh on every check, from 22 to 4,095 (not larger: a function that
    # builds a size × size array must still fit in memory), so a table of the fixed sizes cannot
    # pass; their shapes come from the encoder on the meta device (shapes only, no memory)
    draw = random.SystemRandom()
    fresh = [draw.randrange(22, 200), draw.randrange(200, 4096)]
    others = (*ENCODER_SIZES[1:], *fresh)
    on_meta = copy.deepcopy(encoder).to("meta")
    at_first = _layer_shapes(encoder, torch.zeros(1, 1, first, first), nn.Conv2d)
    got = {}
    for size in others:
        try:
            out = _call(fn, "fn(size)", size, forbid=VAELAB_MODELS, windows=True)
        except _Problem as p:  # e.g. a table {28: ...}[size]: KeyError
            raise _Problem(f"for size={size}, {p}") from p
        got[size] = _shapes(out, "conv", f"for size={size}, ")
    if all(shapes == at_first for shapes in got.values()):  # round() gives them for 27 too
        raise _Problem(f"your function gives the same shapes for sizes "
                       f"{', '.join(map(str, ENCODER_SIZES[1:]))} and others as for "
                       f"size={first} — work each size "
                       f"out from `size`, not from {first}")
    for size, shapes in got.items():
        want = _layer_shapes(on_meta, torch.zeros(1, 1, size, size, device="meta"), nn.Conv2d)
        _compare_shapes(shapes, want,
                        (1, 1, size, size), "conv", ENCODER_RULE, "encoder", f"for size={size}, ",
                        advice=f"right for size={first}, so check the rounding: ⌊·⌋ rounds the "
                               "whole quotient down (// does; round() and math.ceil don't)")


def _layer_shapes(layers: nn.Sequential, x: torch.Tensor, kind: type) -> list[tuple]:
    shapes = []
    with torch.no_grad():
        for layer in layers:
            x = layer(x)
            if isinstance(layer, kind):
                shapes.append(tuple(x.shape))
    return shapes


def _dedup(shapes: list[tuple]) -> list[tuple]:
    return [s for i, s in enumerate(shapes) if i == 0 or s != shapes[i - 1]]


def _whole(d) -> bool:
    """A size written as an int, numpy integer, whole float (np.floor gives 13.0), whole
    Decimal, or a one-number tensor holding one of these (torch.floor gives tensor(13.))."""
    if isinstance(d, torch.Tensor):
        return d.numel() == 1 and _whole(d.item())  # .item(): a bool or complex fails below
    if isinstance(d, decimal.Decimal):  # not a numbers.Real
        return d.is_finite() and d == d.to_integral_value()
    return (isinstance(d, numbers.Real) and not isinstance(d, bool)
            and math.isfinite(d) and float(d).is_integer())


# what a shape may be written as; its sizes may be whole numbers of any numeric type
SHAPE_TYPES = (tuple, list, torch.Size, torch.Tensor, np.ndarray)  # tensors and arrays: 1-D


def _shapes(out, layer: str, where: str = "") -> list[tuple]:
    """The student's list of shapes as tuples of ints, or a ``_Problem`` saying what to return
    (after ``where``, e.g. "for size=27, ")."""
    if not isinstance(out, (list, tuple)) or isinstance(out, torch.Size):
        raise _Problem(f"{where}return a list with one shape per {layer} layer; got "
                       f"{_describe(out)}" + (" — did you forget `return`?" if out is None else ""))
    shapes = []
    for i, s in enumerate(out, 1):
        if isinstance(s, (torch.Tensor, np.ndarray)) and s.ndim != 1:
            kind = "tensors" if isinstance(s, torch.Tensor) else "arrays"
            raise _Problem(f"{where}return the shapes (tuple(t.shape)), not the {kind}")
        if isinstance(s, SHAPE_TYPES) and len(s) == 4 and not all(map(_whole, s)):
            try:
                broken = [float(d) for d in s if not _whole(d)]
            except (TypeError, ValueError):
                broken = []
            broken = [b for b in broken if math.isfinite(b) and b % 1]
            if broken and "transposed" not in layer:
                raise _Problem(f"{where}{layer} layer {i}: a size of {broken[0]:g} is not a whole "
                               "number — a window fits a whole number of times, so the formula "
                               "rounds down: ⌊(in − kernel) / stride⌋ + 1 (// in Python)")
        if not isinstance(s, SHAPE_TYPES) or not all(map(_whole, s)):
            raise _Problem(f"{where}each entry should be a shape of whole numbers like "
                           f"(1, C, H, W); got {s!r}")
        shapes.append(tuple(int(d) for d in s))  # np.int64(13), 13.0, tensor(13.) are fine
    return shapes


def _compare_shapes(out, expected: list[tuple], start: tuple, layer: str, formula: str,
                    part: str, where: str = "", advice: str | None = None) -> None:
    """Raise a ``_Problem`` naming the mistake (after ``where``) unless the student's ``out``
    gives the ``expected`` shapes; a wrong height or width gets ``formula`` and ``advice``
    (by default: print the model's ``part``, "encoder" or "decoder", to read kernel and stride;
    printing the whole model would show the linear layers' sizes too)."""
    shown = f"print(model.{part})"
    shapes = _shapes(out, layer, where)
    k = len(expected)
    if shapes == expected:
        return
    if len(shapes) != k:
        if _dedup(shapes) == expected:
            raise _Problem(f"{where}activations don't change shapes — list one shape per "
                           f"{layer} layer")
        if shapes[:1] == [start] and shapes[1:] == expected:
            raise _Problem(f"{where}leave out the input shape {start}; list each {layer} "
                           "layer's output")
        if shapes[:k] == expected:
            raise _Problem(f"{where}list only the {k} {layer} layers' outputs (nothing after "
                           "them)")
        raise _Problem(f"{where}ConvVAE has {k} {layer} layers here; return one shape per "
                       f"layer — got {len(shapes)}")
    if shapes == [s[1:] for s in expected]:
        raise _Problem(f"{where}include the batch dimension N = 1 in front: (N, C, H, W)")
    if shapes == [(s[0], s[2], s[3], s[1]) for s in expected if len(s) == 4]:
        raise _Problem(f"{where}PyTorch orders dimensions (N, C, H, W): channels come before "
                       "height and width")
    for i, (got, want) in enumerate(zip(shapes, expected, strict=True), start=1):
        if got == want:
            continue
        if len(got) != len(want):
            raise _Problem(f"{where}{layer} layer {i}: give 4 numbers, (N, C, H, W); got {got}")
        if got[0] != want[0]:
            raise _Problem(f"{where}{layer} layer {i}: the batch size N is {want[0]} for one "
                           f"image; got {got[0]} (height and width aside)")
        if got[1] != want[1]:
            raise _Problem(f"{where}{layer} layer {i} has the wrong number of channels — it is "
                           f"the layer's out_channels ({shown} shows them)")
        raise _Problem(f"{where}{layer} layer {i}: wrong height/width {got[2:]} — for each "
                       f"side, {formula}; {advice or f'{shown} shows kernel and stride'}")


check = Checks()
