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
         "weightsym plot-structure --out docs/images/structure-all.png    # the README figure"])
    p.add_argument("name", nargs="?", default="all", type=checks.any_symmetry, metavar="NAME",
                   help="symmetry name, alias or channel+spatial such as tri+spa; 'all' for every symmetry")
    p.add_argument("--out", metavar="PNG",
                   help=f"PNG path (default: ./{DEFAULT_ROOT}/structure-NAME.png)")
    p.add_argument("--n", type=checks.integer(2, 16), default=8, help="channel plane size")
    p.add_argument("--k", type=checks.integer(1, 9), default=5, help="kernel size for spatial symmetries")
    p.set_defaults(func=run)


def run(args) -> int:
    from weightsym.symmetry.catalog import available_symmetries
    from weightsym.symmetry.plot import plot_structure

    names = available_symmetries() if args.name == "all" else [args.name]
    out = args.out or f"{DEFAULT_ROOT}/structure-{args.name.replace('+', '_').replace(':', '-')}.png"
    checks.output_file(out)
    print(f"wrote {plot_structure(names, out, n=args.n, k=args.k)}")
    return 0
