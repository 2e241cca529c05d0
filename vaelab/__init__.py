"""vaelab: the tested code behind the notebook course from autoencoders to VAEs."""

from .cache import train_or_load
from .checkpoints import CheckpointError, load, save
from .data import ImageData, load_mnist
from .losses import kl_divergence, vae_loss
from .models import AE, VAE, ConvVAE
from .train import History, NonFiniteLossError, evaluate, fit, quick_mode

__version__ = "0.1.0"
__all__ = [
    "AE", "VAE", "ConvVAE", "CheckpointError", "History", "ImageData", "NonFiniteLossError",
    "evaluate", "fit", "kl_divergence", "load", "load_mnist", "quick_mode", "save",
    "train_or_load", "vae_loss",
]
