"""Model definitions in plain PyTorch (symmetry is applied from outside, see ``weightsym.nn``).

* :func:`wrn` — pre-activation Wide ResNet (basic or bottleneck blocks) for CIFAR; :func:`wrn_param_count`.
* :func:`resnet` — ResNet-18/34/50/101/152 in the torchvision layout; :func:`resnet_param_count`.
* :class:`AirbenchNet` — the fast CIFAR-10 network of Jordan (2024) (``airbench-W1-W2-W3``).
* :class:`MLP`, :class:`MNIST1DCNN`, :class:`FashionCNN` — small models with square middle layers.
* :class:`LSTMLanguageModel` — word-level LSTM/GRU language model (``lstm-lm``, ``gru-lm``, ``lstm-lm-small``).
* :class:`TransformerLanguageModel` — small decoder-only causal transformer LM (``transformer-lm``).
* :func:`create_model`, :func:`list_models`, :func:`model_info`, :func:`register_model` — the registry.

Example:
    >>> from weightsym.models import create_model, model_info
    >>> model = create_model("wrn-16-4-bottleneck")
    >>> model_info("wrn-16-4-bottleneck")["input_shape"]
    (3, 32, 32)
"""

from .airbench import AirbenchNet, airbench_param_count
from .registry import ModelSpec, create_model, list_models, model_info, register_model
from .resnet import ResNet, resnet, resnet_param_count
from .small import MLP, MNIST1DCNN, FashionCNN
from .wrn import WideResNet, wrn, wrn_param_count
from .language import LSTMLanguageModel, lm_param_count  # noqa: E402  (registers the language-model entries)
from .transformer import TransformerLanguageModel, transformer_param_count  # noqa: E402  (registers transformer-lm)

__all__ = [
    "AirbenchNet",
    "airbench_param_count",
    "MLP",
    "MNIST1DCNN",
    "FashionCNN",
    "LSTMLanguageModel",
    "ModelSpec",
    "ResNet",
    "TransformerLanguageModel",
    "WideResNet",
    "create_model",
    "list_models",
    "lm_param_count",
    "model_info",
    "register_model",
    "resnet",
    "resnet_param_count",
    "transformer_param_count",
    "wrn",
    "wrn_param_count",
]
