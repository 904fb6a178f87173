"""Word-level corpora in the Penn Treebank / WikiText-2 text format, and the batching used for language modelling.

Format (Mikolov's PTB, WikiText-2 "tokens" release): one sentence or paragraph per line, words separated by
whitespace, rare words already replaced by ``<unk>``.  Every line gets one ``<eos>`` token at its end (the
pytorch/examples ``word_language_model`` convention, which the paper's code follows); the vocabulary is built from
the training file only, in order of first appearance.  Real PTB gives 10,000 word types and 929,589 training tokens
(73,760 valid, 82,430 test); WikiText-2 33,278 types and 2,088,628 training tokens.

Batching: :func:`batchify` cuts a token stream into ``batch_size`` contiguous columns, shape ``(T, batch_size)``;
:func:`get_batch` returns the ``(input, target)`` window of ``bptt`` steps starting at row ``i`` (targets shifted by
one).  The hidden state of column ``b`` at the end of one window is the right start for the next window.

Example:
    >>> corpus = load_corpus("ptb", "/work/shared/data")            # doctest: +SKIP
    >>> len(corpus.dictionary), corpus.train.numel()                   # doctest: +SKIP
    (10000, 929589)
    >>> data = batchify(corpus.train, 20)                               # doctest: +SKIP
    >>> x, y = get_batch(data, 0, 35)                                  # doctest: +SKIP
    >>> x.shape, y.shape                                               # doctest: +SKIP
    (torch.Size([35, 20]), torch.Size([35, 20]))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from weightsym.suggest import did_you_mean

from .paths import data_root, missing_data_error

EOS = "<eos>"

# corpus name -> (sub-folder of the data root, file names for train / valid / test)
CORPORA = {
    "ptb": ("text/ptb", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")),
    "wikitext-2": ("text/wikitext-2", ("train.txt", "valid.txt", "test.txt")),
}
ALIASES = {"penn": "ptb", "wikitext2": "wikitext-2", "wikitext_2": "wikitext-2", "wt2": "wikitext-2"}


@dataclass
class Dictionary:
    """Word <-> id, ids in order of first appearance."""

    idx2word: list[str] = field(default_factory=list)
    word2idx: dict[str, int] = field(default_factory=dict)

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def encode(self, words: list[str]) -> list[int]:
        """Ids of ``words``; unknown words map to ``<unk>`` (a KeyError naming the word if there is none)."""
        unk = self.word2idx.get("<unk>")
        out = []
        for w in words:
            i = self.word2idx.get(w, unk)
            if i is None:
                raise KeyError(f"word {w!r} is not in the vocabulary and the vocabulary has no <unk>")
            out.append(i)
        return out

    def decode(self, ids) -> list[str]:
        return [self.idx2word[int(i)] for i in ids]


def read_words(path: str | os.PathLike) -> list[list[str]]:
    """The lines of ``path`` as word lists, each ending with ``<eos>`` (blank lines give just ``<eos>``)."""
    with open(path, encoding="utf-8") as handle:
        return [line.split() + [EOS] for line in handle]


def tokenize(path: str | os.PathLike, dictionary: Dictionary, grow: bool) -> torch.Tensor:
    """One int64 tensor of ids for the whole file.  ``grow``: add new words to ``dictionary`` (training file);
    otherwise a word outside the vocabulary is an error naming the file and the word (PTB and WikiText-2 have none)."""
    ids: list[int] = []
    for number, words in enumerate(read_words(path), 1):
        for word in words:
            if grow:
                ids.append(dictionary.add_word(word))
            else:
                index = dictionary.word2idx.get(word)
                if index is None:
                    raise ValueError(f"{path}:{number}: word {word!r} is not in the training vocabulary")
                ids.append(index)
    return torch.tensor(ids, dtype=torch.int64)


@dataclass
class Corpus:
    """Train / valid / test token streams (1-D int64) and the vocabulary built from train."""

    dictionary: Dictionary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    name: str = ""
    path: str = ""

    @classmethod
    def from_files(cls, train: str | os.PathLike, valid: str | os.PathLike, test: str | os.PathLike,
                   name: str = "") -> "Corpus":
        dictionary = Dictionary()
        train_ids = tokenize(train, dictionary, grow=True)
        return cls(dictionary, train_ids, tokenize(valid, dictionary, grow=False),
                   tokenize(test, dictionary, grow=False), name, str(Path(train).parent))

    def summary(self) -> dict:
        return {"corpus": self.name, "vocab": len(self.dictionary), "train_tokens": int(self.train.numel()),
                "valid_tokens": int(self.valid.numel()), "test_tokens": int(self.test.numel())}


def corpus_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding corpus ``name``: ``<data root>/text/<name>``, or ``data_dir`` itself if the files are there."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}{did_you_mean(key, {**{k: k for k in CORPORA}, **ALIASES})}; available: {', '.join(CORPORA)}")
    sub, files = CORPORA[key]
    root = data_root(data_dir)
    for candidate in (root / sub, root / Path(sub).name, root):
        if all((candidate / f).is_file() for f in files):
            return candidate
    raise missing_data_error(f"corpus {key} ({', '.join(files)})", [root / sub, root / Path(sub).name, root],
                             f"weightsym download {key} --data-dir {root}")


def load_corpus(name: str, data_dir: str | os.PathLike | None = None) -> Corpus:
    """Read corpus ``name`` (``ptb`` or ``wikitext-2``) from ``data_dir`` (default: ``$WEIGHTSYM_DATA``).

    ``data_dir`` may be the data root (holding ``text/ptb/``) or the corpus folder itself.
    """
    key = ALIASES.get(name.lower(), name.lower())
    folder = corpus_dir(key, data_dir)
    return Corpus.from_files(*(folder / f for f in CORPORA[key][1]), name=key)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` contiguous columns: shape ``(len(data) // batch_size,
    batch_size)``; the tail that does not fill a row is dropped.  Column ``b`` is ``data[b*T:(b+1)*T]``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = data.numel() // batch_size
    if rows < 2:
        raise ValueError(f"{data.numel()} tokens are too few for batch size {batch_size} (need at least 2 rows)")
    return data[: rows * batch_size].view(batch_size, rows).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, target)`` of shape ``(L, batch)`` with ``L = min(bptt, len(source) - 1 - i)``; target is input
    shifted by one step."""
    length = min(bptt, source.size(0) - 1 - i)
    return source[i : i + length], source[i + 1 : i + 1 + length]
