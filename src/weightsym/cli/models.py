"""``weightsym models``: the registered model names, one line each."""

from __future__ import annotations

from weightsym.cli.parser import add_command


def add_parser(sub) -> None:
    p = add_command(
        sub, "models", "list the registered models (the names --model takes), one line each",
        "List every model name of the registry (weightsym.models.list_models) with its task, input shape, classes or "
        "vocabulary, default dataset and a one-line description. Any wrn-D-W[-bottleneck] with D = 6n+4 is accepted "
        "too, not only the ones listed.",
        ["weightsym models", "weightsym models --task language-model"])
    p.add_argument("--task", choices=("classification", "language-model"), default=None,
                   help="only models of this task (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from weightsym.models import list_models, model_info

    infos = [model_info(name) for name in list_models()]
    infos = [i for i in infos if args.task in (None, i.get("task", "classification"))]
    width = max(len(i["name"]) for i in infos)
    for info in infos:
        shape = "x".join(map(str, info["input_shape"]))
        task = info.get("task", "classification")
        data = f"{info['dataset']}, {info['num_classes']} {'words' if task == 'language-model' else 'classes'}"
        print(f"{info['name']:<{width}}  {task:<14}  in {shape:<9}  {data:<25}  {info.get('description', '')}")
    return 0
