"""``weightsym lm``, ``weightsym lm-sample`` and ``weightsym download``: thin wrappers over :mod:`weightsym.lm.train`
and :func:`weightsym.data.download.download_dataset`."""

from __future__ import annotations

import argparse
import json

from weightsym.lm.train import LMConfig


def _gates(text: str) -> str:
    if not text or set(text) - {"0", "1"}:
        raise argparse.ArgumentTypeError(f"gate mask {text!r} must be 0/1 characters, e.g. 1111 (LSTM: i f g o)")
    return text


def setup_lm(subparsers) -> None:
    d = LMConfig()
    p = subparsers.add_parser(
        "lm", help="train a word-level LSTM/GRU language model (PTB, WikiText-2), dense or with symmetric gates",
        description="Truncated-BPTT training of an LSTM/GRU language model with optional symmetric gate blocks. "
                    "Writes log.jsonl, last.safetensors (for --resume), best.safetensors and summary.json to --out.",
        epilog="example: weightsym lm --corpus ptb --data-dir ../shared/data --channel average --hh-gates 1111 "
               "--emb 256 --hidden 256 --layers 2 --dropout 0.5 --tie --epochs 6 --out runs/ptb-avg-hh")
    p.add_argument("--corpus", default=d.corpus, choices=["ptb", "wikitext-2"], help="default %(default)s")
    p.add_argument("--data-dir", default=None, help="data root holding text/<corpus>/ (default $WEIGHTSYM_DATA)")
    p.add_argument("--model", dest="rnn_type", default=d.rnn_type, choices=["lstm", "gru"], help="default lstm")
    p.add_argument("--channel", default=None,
                   help="symmetry of the gate blocks: average (paper), triangular, eigen, lowrank[:r], block, "
                        "bisymmetric, centrosymmetric, eighth, repeat:c; omit (or 'none') for a dense model")
    p.add_argument("--hh-gates", type=_gates, default=d.hh_gates,
                   help="which gate blocks of weight_hh are symmetric (LSTM i f g o, GRU r z n), default %(default)s")
    p.add_argument("--ih-gates", type=_gates, default=None,
                   help="which gate blocks of weight_ih are symmetric (needs --emb == --hidden), default none")
    p.add_argument("--emb", type=int, default=d.emb, help="embedding size, default %(default)s")
    p.add_argument("--hidden", type=int, default=d.hidden, help="hidden units per layer, default %(default)s")
    p.add_argument("--layers", type=int, default=d.layers, help="default %(default)s")
    p.add_argument("--dropout", type=float, default=d.dropout, help="default %(default)s")
    p.add_argument("--tie", action="store_true", help="tie decoder and embedding weights (needs --emb == --hidden)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    p.add_argument("--bptt", type=int, default=d.bptt, help="truncated-BPTT window, default %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="SGD learning rate, default %(default)s")
    p.add_argument("--anneal", type=float, default=d.anneal,
                   help="divide lr by this when validation loss does not improve, default %(default)s")
    p.add_argument("--clip", type=float, default=d.clip, help="gradient-norm clip, default %(default)s")
    p.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    p.add_argument("--max-train-tokens", type=int, default=None, help="train on the first N tokens only (quick runs)")
    p.add_argument("--max-eval-tokens", type=int, default=None,
                   help="evaluate on the first N valid/test tokens only (quick runs; default: full sets)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=d.out, help="run folder, default %(default)s")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.safetensors "
                   "(its saved options are used; only --epochs may be raised)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON instead of a table")
    p.set_defaults(func=run_lm)


def run_lm(args) -> int:
    from weightsym.lm.train import fit

    config = LMConfig(corpus=args.corpus, data_dir=args.data_dir, rnn_type=args.rnn_type,
                      channel=None if args.channel in (None, "", "none", "dense") else args.channel,
                      hh_gates=args.hh_gates, ih_gates=args.ih_gates, emb=args.emb, hidden=args.hidden,
                      layers=args.layers, dropout=args.dropout, tie=args.tie, epochs=args.epochs, bptt=args.bptt,
                      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, lr=args.lr,
                      anneal=args.anneal, clip=args.clip, seed=args.seed, max_train_tokens=args.max_train_tokens,
                      max_eval_tokens=args.max_eval_tokens, threads=args.threads, out=args.out)
    if config.rnn_type == "gru" and args.hh_gates == LMConfig.hh_gates:
        config.hh_gates = "111"
    quiet = (lambda *a, **k: None) if args.json else print
    summary = fit(config, resume=args.resume, progress=not args.no_progress, log=quiet)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return 0


def setup_sample(subparsers) -> None:
    p = subparsers.add_parser("lm-sample", help="print text sampled from a trained language model checkpoint",
                              epilog="example: weightsym lm-sample runs/ptb-avg-hh/best.safetensors --words 50")
    p.add_argument("checkpoint", help="best.safetensors (or last.safetensors) written by `weightsym lm`")
    p.add_argument("--words", type=int, default=50, help="default %(default)s")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, default %(default)s")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("--prompt", default=None, help="words to condition on (must be in the vocabulary, or <unk>)")
    p.set_defaults(func=run_sample)


def run_sample(args) -> int:
    from weightsym.lm.train import format_text, generate, load_language_model

    model, dictionary, _ = load_language_model(args.checkpoint)
    words = generate(model, dictionary, args.words, args.temperature, args.seed,
                     args.prompt.split() if args.prompt else None)
    print(format_text(words))
    return 0


def setup_download(subparsers) -> None:
    p = subparsers.add_parser("download", help="download a dataset (ptb, wikitext-2, cifar10, cifar100, "
                              "fashion-mnist) with sha256 checks",
                              epilog="example: weightsym download ptb --data-dir ~/data  (-> ~/data/text/ptb/)")
    p.add_argument("name", help="ptb, wikitext-2, cifar10, cifar100 or fashion-mnist")
    p.add_argument("--data-dir", default=None, help="data root (default $WEIGHTSYM_DATA or ~/.cache/weightsym)")
    p.add_argument("--variant", default=None, help="cifar only: binary (default) or python")
    p.set_defaults(func=run_download)


def run_download(args) -> int:
    from weightsym.data.download import download_dataset

    root = download_dataset(args.name, args.data_dir, variant=args.variant)
    print(f"{args.name}: ready under {root}")
    return 0
