"""Word-level recurrent language model (the pytorch/examples ``word_language_model`` design the paper builds on).

``LSTMLanguageModel``: embedding -> dropout -> multi-layer ``nn.LSTM`` / ``nn.GRU`` (dropout between layers) ->
dropout -> linear decoder over the vocabulary.  Optional weight tying (decoder weight = embedding, needs
``hidden_size == emb_size``; Press & Wolf 2017, Inan et al. 2017).  Plain PyTorch: symmetry is applied from outside,
e.g. ``weightsym.symmetrize(model, channel="average", hh_gates="1111")`` makes each gate block of every
``weight_hh_l*`` symmetric (the embedding counts as the input stem and the decoder as the classifier, so only the
recurrent layer is touched).

Parameter count (untied, ``V`` vocabulary, ``E`` embedding, ``H`` hidden, ``L`` layers, ``G`` = 4 for LSTM, 3 for
GRU): ``V·E + G·H·(E + H + 2) + (L-1)·G·H·(2H + 2) + H·V + V``.  The paper's medium PTB model (V = 10,000,
E = H = 650, L = 2, LSTM) has 19,780,400.

Registry entries (see :func:`weightsym.models.create_model`; ``num_classes`` is the vocabulary size):
``lstm-lm`` / ``gru-lm`` (defaults: 650 units, 2 layers, dropout 0.5, untied, PTB vocabulary 10,000 — the paper's
medium model), ``lstm-lm-small`` (2x256 tied, the CPU-scale reproduction).

Example:
    >>> import torch
    >>> model = LSTMLanguageModel(vocab_size=100, emb_size=16, hidden_size=16, num_layers=2, dropout=0.0,
    ...                           tie_weights=True)
    >>> tokens = torch.randint(0, 100, (35, 4))            # (time, batch)
    >>> logits, hidden = model(tokens, model.init_hidden(4))
    >>> logits.shape
    torch.Size([35, 4, 100])
"""

from __future__ import annotations

import torch
from torch import nn

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}


class LSTMLanguageModel(nn.Module):
    """Embedding + multi-layer LSTM/GRU + decoder.  Inputs are ``(T, B)`` token ids (time first), outputs
    ``(T, B, vocab)`` logits and the final hidden state (``(h, c)`` for LSTM, ``h`` for GRU)."""

    def __init__(self, vocab_size: int, emb_size: int = 650, hidden_size: int = 650, num_layers: int = 2,
                 dropout: float = 0.5, tie_weights: bool = False, rnn_type: str = "lstm"):
        super().__init__()
        rnn_type = rnn_type.lower()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, got {rnn_type!r}")
        if tie_weights and hidden_size != emb_size:
            raise ValueError(f"tie_weights needs hidden_size == emb_size, got hidden {hidden_size} and emb {emb_size}; "
                             "set them equal or drop --tie")
        self.vocab_size, self.emb_size, self.hidden_size = int(vocab_size), int(emb_size), int(hidden_size)
        self.num_layers, self.dropout, self.tie_weights, self.rnn_type = int(num_layers), float(dropout), \
            bool(tie_weights), rnn_type
        # registration order matters: the embedding is the first module (the "stem"), the decoder the last
        self.encoder = nn.Embedding(vocab_size, emb_size)
        self.drop = nn.Dropout(dropout)
        self.rnn = RNN_TYPES[rnn_type](emb_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.init_weights()

    def init_weights(self, init_range: float = 0.1) -> None:
        """Uniform(-0.1, 0.1) embedding and decoder, zero decoder bias; the recurrent layer keeps PyTorch's init."""
        nn.init.uniform_(self.encoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if not self.tie_weights:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

    def config(self) -> dict:
        """Constructor arguments (enough to rebuild the model)."""
        return {"vocab_size": self.vocab_size, "emb_size": self.emb_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "dropout": self.dropout, "tie_weights": self.tie_weights,
                "rnn_type": self.rnn_type}

    def init_hidden(self, batch_size: int):
        """Zero hidden state for ``batch_size`` columns (on the model's device and dtype)."""
        w = self.decoder.bias
        h = w.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return (h, h.clone()) if self.rnn_type == "lstm" else h

    def forward(self, tokens: torch.Tensor, hidden=None):
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden


def repackage_hidden(hidden):
    """Detach a hidden state (tensor or tuple of tensors; ``None`` for a model without state) from its history:
    truncated BPTT."""
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(repackage_hidden(h) for h in hidden)


def lm_param_count(vocab_size: int, emb_size: int, hidden_size: int, num_layers: int, tie_weights: bool = False,
                   rnn_type: str = "lstm") -> int:
    """Closed-form parameter count of :class:`LSTMLanguageModel` (dense)."""
    g = 4 if rnn_type == "lstm" else 3
    rnn = g * hidden_size * (emb_size + hidden_size + 2) + (num_layers - 1) * g * hidden_size * (2 * hidden_size + 2)
    decoder = vocab_size + (0 if tie_weights else hidden_size * vocab_size)
    return vocab_size * emb_size + rnn + decoder


def _register() -> None:
    from .registry import register_model

    def factory(rnn_type, size, tie):
        def build(num_classes: int = 10000, emb_size: int = size, hidden_size: int = size, num_layers: int = 2,
                  dropout: float = 0.5, tie_weights: bool = tie) -> LSTMLanguageModel:
            return LSTMLanguageModel(num_classes, emb_size, hidden_size, num_layers, dropout, tie_weights, rnn_type)
        return build

    common = dict(input_shape=(35,), num_classes=10000, dataset="ptb", task="language-model", input_dtype="int64",
                  overwrite=True)
    register_model("lstm-lm", factory("lstm", 650, False), description="2-layer LSTM language model, 650 units, "
                   "dropout 0.5, untied (the paper's medium PTB model); inputs (T, B) token ids", **common)
    register_model("gru-lm", factory("gru", 650, False), description="2-layer GRU language model, 650 units, "
                   "dropout 0.5, untied; inputs (T, B) token ids", **common)
    register_model("lstm-lm-small", factory("lstm", 256, True), description="2-layer LSTM language model, 256 units, "
                   "tied, dropout 0.5 (CPU-scale); inputs (T, B) token ids", **common)


_register()
