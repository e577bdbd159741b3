"""``labkit assignments build``: write the student versions of the exercise notebooks.

    labkit assignments build                      # bundled notebooks -> ./student/
    labkit assignments build --src notebooks --out handout/
    labkit assignments build --out handout/ --check   # exit 1 if handout/ is out of date

The build is deterministic (see :mod:`labkit.exercises.build`), so the student
folder can be committed next to the masters and regenerated at will.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``build`` sub-subcommand to ``labkit assignments``."""
    sub = parser.add_subparsers(dest="assignments_command", metavar="{build}")
    p = sub.add_parser("build", help="write student versions (solutions replaced by stubs) into a folder")
    p.add_argument("--src", default=None, help="a master notebook or a folder of them (default: the bundled notebooks)")
    p.add_argument("--out", default="student", help="folder for the student versions (default: %(default)s/)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out is missing or out of date")
    parser.set_defaults(_assignments_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run ``labkit assignments <command>``; return the exit status."""
    if getattr(args, "assignments_command", None) != "build":
        args._assignments_parser.print_help()
        return 2
    from labkit.exercises.build import BuildError, build, stale

    try:
        if args.src is None:
            from labkit.cli import notebooks_dir

            args.src = notebooks_dir()
        if args.check:
            outdated = stale(args.src, args.out)
            for path in outdated:
                print(f"out of date: {path}")
            print(f"{len(outdated)} student notebook(s) out of date in {args.out}" if outdated else "up to date")
            return 1 if outdated else 0
        results = build(args.src, args.out)
    except (BuildError, FileNotFoundError) as err:
        print(f"labkit assignments build: error: {err}", file=sys.stderr)
        return 1
    for r in results:
        what = f"{r.regions} solution region(s) replaced" if r.regions else "no exercises, copied"
        print(f"{r.target}  ({what})")
    print(f"wrote {len(results)} student notebook(s) to {args.out}")
    return 0
