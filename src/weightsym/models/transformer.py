"""A small decoder-only transformer language model (nanoGPT's design, sized for a CPU).

``TransformerLanguageModel``: token embedding + learned position embedding -> dropout -> ``num_layers`` pre-LayerNorm
blocks -> LayerNorm -> linear decoder over the vocabulary, its weight tied to the token embedding by default.  A
block is ``x + attn(ln1(x))`` with a causal ``nn.MultiheadAttention`` (query, key and value projections in one
``in_proj_weight`` of shape (3d, d), output projection ``out_proj``), then ``x + ff(ln2(x))`` with the feed-forward
``ff.up`` (d -> 4d), GELU, ``ff.down`` (4d -> d).  Plain PyTorch: symmetry is applied from outside, e.g.
``weightsym.symmetrize(model, channel="triangular", qkv="110", include=["*.attn"])`` makes the query and key
projections of every block symmetric (``docs/language_model.md``).

It speaks the same protocol as :class:`~weightsym.models.language.LSTMLanguageModel`, so one training loop serves
both: inputs are ``(T, B)`` token ids (time first, ``T <= context``), ``forward(tokens, hidden)`` returns ``(T, B,
vocab)`` logits and the next hidden state, which is always ``None`` (``init_hidden`` gives ``None`` too): nothing is
carried from one window to the next, every window is read from its first token.

Parameter count (``V`` vocabulary, ``C`` context, ``d`` width, ``L`` blocks, tied): ``V·d + C·d + L·(12d² + 13d) +
2d + V`` (:func:`transformer_param_count`; untied adds ``V·d``).  Registry entry ``transformer-lm``: 4 blocks, d = 128,
4 heads, context 64, dropout 0.1, tied.

Example:
    >>> import torch
    >>> model = TransformerLanguageModel(vocab_size=100, d_model=16, num_layers=2, heads=2, context=8, dropout=0.0)
    >>> logits, hidden = model(torch.randint(0, 100, (8, 3)))      # (time, batch)
    >>> logits.shape, hidden
    (torch.Size([8, 3, 100]), None)
    >>> sum(p.numel() for p in model.parameters()) == transformer_param_count(100, 16, 2, 8)
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FeedForward(nn.Module):
    """``down(gelu(up(x)))``, ``up``: d -> ``mult``·d, ``down``: back to d, then dropout."""

    def __init__(self, d_model: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(d_model, mult * d_model)
        self.act = nn.GELU()
        self.down = nn.Linear(mult * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(self.act(self.up(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + ff(ln2(x))``; causal self-attention."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout)  # (T, B, d), time first
        self.drop = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, 4, dropout)

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        attended, _ = self.attn(h, h, h, attn_mask=causal_mask, need_weights=False, is_causal=True)
        x = x + self.drop(attended)
        return x + self.ff(self.ln2(x))


class TransformerLanguageModel(nn.Module):
    """Decoder-only causal transformer LM; ``(T, B)`` token ids in, ``(T, B, vocab)`` logits and ``None`` out."""

    def __init__(self, vocab_size: int, d_model: int = 128, num_layers: int = 4, heads: int = 4, context: int = 64,
                 dropout: float = 0.1, tie_weights: bool = True):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"the width d_model={d_model} must be divisible by heads={heads} (e.g. 128 and 4)")
        self.vocab_size, self.d_model, self.num_layers, self.heads = int(vocab_size), int(d_model), int(num_layers), \
            int(heads)
        self.context, self.dropout, self.tie_weights = int(context), float(dropout), bool(tie_weights)
        # registration order matters: the token embedding is the first module (the stem), the decoder the last
        self.encoder = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.register_buffer("causal_mask", torch.ones(context, context, dtype=torch.bool).triu(1), persistent=False)
        self.init_weights()

    def init_weights(self) -> None:
        """nanoGPT's initialisation: N(0, 0.02) weights and embeddings, zero biases, and N(0, 0.02/sqrt(2L)) for the
        two projections that write into the residual stream (``attn.out_proj``, ``ff.down``)."""
        residual = 0.02 / math.sqrt(2 * self.num_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, 0.0, 0.02)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, (nn.Linear, nn.Embedding)) and not (module is self.decoder and self.tie_weights):
                std = residual if name.endswith(("out_proj", "ff.down")) else 0.02
                nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def config(self) -> dict:
        """Constructor arguments (enough to rebuild the model)."""
        return {"vocab_size": self.vocab_size, "d_model": self.d_model, "num_layers": self.num_layers,
                "heads": self.heads, "context": self.context, "dropout": self.dropout, "tie_weights": self.tie_weights}

    def init_hidden(self, batch_size: int) -> None:
        """No state is carried between windows: ``None`` (the LSTM model's protocol)."""
        return None

    def forward(self, tokens: torch.Tensor, hidden=None) -> tuple[torch.Tensor, None]:
        steps = tokens.size(0)
        if steps > self.context:
            raise ValueError(f"a window of {steps} tokens is longer than the model's context of {self.context}; "
                             "use windows (--bptt) of at most the context")
        positions = self.position(torch.arange(steps, device=tokens.device))
        x = self.drop(self.encoder(tokens) + positions.unsqueeze(1))
        mask = self.causal_mask[:steps, :steps]
        for block in self.blocks:
            x = block(x, mask)
        return self.decoder(self.norm(x)), None


def transformer_param_count(vocab_size: int, d_model: int, num_layers: int, context: int,
                            tie_weights: bool = True) -> int:
    """Closed-form parameter count of :class:`TransformerLanguageModel` (dense): per block 4d² + 4d attention,
    8d² + 5d feed-forward and 4d in two LayerNorms."""
    d = d_model
    return vocab_size * d + context * d + num_layers * (12 * d * d + 13 * d) + 2 * d + vocab_size \
        + (0 if tie_weights else vocab_size * d)


def _register() -> None:
    from .registry import register_model

    def build(num_classes: int = 10000, emb_size: int = 128, hidden_size: int = 128, num_layers: int = 4,
              dropout: float = 0.1, tie_weights: bool = True, heads: int = 4,
              context: int = 64) -> TransformerLanguageModel:
        if emb_size != hidden_size:
            raise ValueError(f"a transformer's embedding is its residual stream: emb_size ({emb_size}) must equal "
                             f"hidden_size ({hidden_size})")
        return TransformerLanguageModel(num_classes, hidden_size, num_layers, heads, context, dropout, tie_weights)

    register_model("transformer-lm", build, input_shape=(64,), num_classes=10000, dataset="ptb",
                   task="language-model", input_dtype="int64", overwrite=True,
                   description="decoder-only causal transformer LM, 4 pre-LN blocks, d=128, 4 heads, context 64, "
                               "tied embeddings (nanoGPT-style, CPU-scale); inputs (T, B) token ids")


_register()
