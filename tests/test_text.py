"""PTB / WikiText-2 reader and LM batching."""

from __future__ import annotations

import pytest
import torch

from weightsym.data.text import Corpus, Dictionary, batchify, corpus_dir, get_batch, load_corpus, tokenize


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def toy(tmp_path):
    return Corpus.from_files(write(tmp_path / "train.txt", " a b <unk> \n b c\n\n"),
                             write(tmp_path / "valid.txt", "c a\n"), write(tmp_path / "test.txt", "b\n"), "toy")


def test_eos_per_line_and_vocabulary_in_order_of_appearance(toy):
    assert toy.dictionary.idx2word == ["a", "b", "<unk>", "<eos>", "c"]
    assert toy.dictionary.decode(toy.train) == ["a", "b", "<unk>", "<eos>", "b", "c", "<eos>", "<eos>"]
    assert toy.dictionary.decode(toy.valid) == ["c", "a", "<eos>"]
    assert toy.summary() == {"corpus": "toy", "vocab": 5, "train_tokens": 8, "valid_tokens": 3, "test_tokens": 2}


def test_word_outside_training_vocabulary_is_an_error(tmp_path, toy):
    with pytest.raises(ValueError, match=r"valid2.txt:2: word 'zebra'"):
        tokenize(write(tmp_path / "valid2.txt", "a\nzebra\n"), toy.dictionary, grow=False)
    assert toy.dictionary.encode(["a", "zebra"]) == [0, 2]  # encode maps unknown words to <unk>
    with pytest.raises(KeyError, match="zebra"):
        Dictionary().encode(["zebra"])


def test_batchify_columns_are_contiguous_and_get_batch_shifts_by_one():
    data = torch.arange(23)
    batched = batchify(data, 4)  # 5 rows, 3 tokens dropped
    assert batched.shape == (5, 4)
    assert batched[:, 1].tolist() == [5, 6, 7, 8, 9]
    x, y = get_batch(batched, 0, 3)
    assert x.shape == y.shape == (3, 4) and torch.equal(y, x + 1)
    x, y = get_batch(batched, 3, 3)  # the last window is shorter
    assert x.shape == (1, 4) and torch.equal(y, batched[4:5])
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(5), 4)


def test_missing_corpus_names_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="weightsym download ptb"):
        corpus_dir("ptb", tmp_path)
    with pytest.raises(ValueError, match="unknown corpus"):
        corpus_dir("enwik8", tmp_path)


def text_dir(shared_data):
    if not (shared_data / "text" / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: PTB not found under {shared_data / 'text' / 'ptb'}")
    return shared_data


def test_real_ptb_counts(shared_data):
    corpus = load_corpus("ptb", text_dir(shared_data))
    assert len(corpus.dictionary) == 10_000
    assert corpus.train.numel() == 929_589
    assert corpus.valid.numel() == 73_760 and corpus.test.numel() == 82_430
    eos = corpus.dictionary.word2idx["<eos>"]
    assert int((corpus.train == eos).sum()) == 42_068  # one <eos> per line
    assert "<unk>" in corpus.dictionary.word2idx
    # the corpus folder itself works as data_dir too
    assert load_corpus("penn", shared_data / "text" / "ptb").train.numel() == 929_589


def test_real_wikitext2_counts(shared_data):
    if not (shared_data / "text" / "wikitext-2" / "train.txt").exists():
        pytest.skip(f"SKIPPED LOUDLY: WikiText-2 not found under {shared_data / 'text' / 'wikitext-2'}")
    corpus = load_corpus("wikitext-2", shared_data)
    assert len(corpus.dictionary) == 33_278
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (2_088_628, 217_646, 245_569)
