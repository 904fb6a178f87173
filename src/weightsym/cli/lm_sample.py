"""``weightsym lm-sample``: text sampled from a trained language model."""

from __future__ import annotations

from weightsym.cli import checks
from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "lm-sample", "print text sampled from a trained language model checkpoint",
        "Rebuild the language model of a `weightsym lm` checkpoint (symmetric gate blocks included) with its "
        "vocabulary, and print --words words sampled from it, optionally continuing a --prompt.",
        ["weightsym lm-sample runs/ptb-avg-hh/best.safetensors --words 50 --seed 1",
         "weightsym lm-sample runs/ptb-avg-hh/best.safetensors --prompt 'the company said' --temperature 0.8"])
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="best.safetensors (or last.safetensors) written by `weightsym lm`")
    p.add_argument("--words", type=checks.integer(1), default=50, help="words to sample")
    p.add_argument("--temperature", type=checks.number(0, low_open=True), default=1.0,
                   help="softmax temperature (lower: more predictable text)")
    p.add_argument("--seed", type=checks.integer(0), default=None, help="sampling seed (default: random)")
    p.add_argument("--prompt", default=None,
                   help="words to continue, each in the vocabulary or <unk> (default: a random first word)")
    p.set_defaults(func=run)


def run(args) -> int:
    model_file = checks.checkpoint(args.checkpoint, "CHECKPOINT", ("language-model",))
    from weightsym.lm.train import format_text, generate, load_language_model

    model, dictionary, _ = load_language_model(model_file)
    prompt = args.prompt.split() if args.prompt else None
    unknown = [w for w in prompt or [] if w not in dictionary.word2idx]
    if unknown and "<unk>" not in dictionary.word2idx:
        raise checks.UsageError(f"--prompt: {', '.join(map(repr, unknown[:5]))} not in the vocabulary; use words "
                                "of the training corpus")
    words = generate(model, dictionary, args.words, args.temperature, args.seed, prompt)
    print(format_text(words))
    return 0
