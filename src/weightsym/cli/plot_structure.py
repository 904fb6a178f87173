"""``weightsym plot-structure``: a PNG of which weight entries a symmetry ties together."""

from __future__ import annotations

from weightsym.cli import checks
from weightsym.cli.parser import add_command

DEFAULT_ROOT = "weightsym-results"


def add_parser(sub) -> None:
    p = add_command(
        sub, "plot-structure", "draw which weight entries a symmetry ties (PNG)",
        "Draw the orbits of a symmetry, or of all of them: one panel per plane (an N x N channel plane or a K x K "
        "kernel), entries with the same colour and number are one free value. The matrix parameterizations "
        "(average, eigen, lowrank) are not tyings: their panels show the symmetric pattern W = Wt they produce.",
        ["weightsym plot-structure tri+spa", "weightsym plot-structure bisymmetric --n 6",
         "weightsym plot-structure repeat:3:kw    # a 6x6 kernel: its columns must be a multiple of 3",
         "weightsym plot-structure --out docs/images/structure-all.png    # the README figure"])
    p.add_argument("name", nargs="?", default="all", type=checks.any_symmetry, metavar="NAME",
                   help="symmetry name, alias or channel+spatial such as tri+spa; 'all' for every symmetry")
    p.add_argument("--out", metavar="PNG",
                   help=f"PNG path (default: ./{DEFAULT_ROOT}/structure-NAME.png)")
    p.add_argument("--n", type=checks.integer(2, 16), default=8, help="channel plane size")
    p.add_argument("--k", type=checks.integer(1, 9), default=None,
                   help="kernel size for spatial symmetries (default 5, or the nearest size a symmetry acts on: "
                        "repeat:3:kw draws a 6x6 kernel)")
    p.set_defaults(func=run)


def run(args) -> int:
    from weightsym.symmetry.base import Composite
    from weightsym.symmetry.catalog import available_symmetries, get_symmetry
    from weightsym.symmetry.plot import plot_structure

    names = available_symmetries() if args.name == "all" else [args.name]
    out = args.out if args.out is not None else \
        f"{DEFAULT_ROOT}/structure-{args.name.replace('+', '_').replace(':', '-')}.png"
    checks.output_file(out)
    if args.k is not None:
        from weightsym.symmetry.plot import kernel_size_for

        for name in names:
            sym = get_symmetry(name)
            spatial = sym.spatial if isinstance(sym, Composite) else sym if sym.plane == "spatial" else None
            if spatial is not None:
                try:
                    kernel_size_for(spatial.spec, args.k)
                except ValueError as exc:
                    raise checks.UsageError(f"--k {args.k}: {exc}") from None
    print(f"wrote {plot_structure(names, out, n=args.n, k=args.k)}")
    return 0
