"""``labkit assignments build``: write the student versions of the exercise notebooks.

    labkit assignments build                      # bundled notebooks -> ./student/
    labkit assignments build --src notebooks --out handout/
    labkit assignments build --out handout/ --check   # exit 1 if handout/ is out of date
    labkit assignments build --format nbgrader --out course/   # an nbgrader course folder (source/, config)

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
    p.add_argument("--format", choices=("student", "nbgrader"), default="student",
                   help="student: notebooks with stubs and self-checks (default); nbgrader: a course folder "
                   "(nbgrader_config.py, source/<notebook>/) with solution cells and autograded check cells")
    p.add_argument("--points", action="append", default=[], metavar="ID=N",
                   help="nbgrader: points of exercise ID (default 1 each); repeat for several")
    p.add_argument("--hidden", action="append", default=[], metavar="ID",
                   help="nbgrader: grade exercise ID with a hidden test (students do not see the check cell's "
                   "code); 'all' hides every check; repeat for several")
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
        if args.format == "nbgrader":
            return _nbgrader(args)
        if args.points or args.hidden:
            raise BuildError("--points and --hidden apply to --format nbgrader only")
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


def _points(items: list[str]) -> dict[str, float]:
    from labkit.exercises.build import BuildError

    points = {}
    for item in items:
        id, sep, value = item.partition("=")
        try:
            points[id] = int(float(value)) if float(value).is_integer() else float(value)
        except ValueError:
            sep = ""
        if not sep or not id or points[id] <= 0:
            raise BuildError(f"--points takes ID=N with N > 0 (e.g. fractal.boundary=2), got {item!r}")
    return points


def _nbgrader(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit.exercises.course import build_course, course_files

    kwargs = {"points": _points(args.points), "hidden": set(args.hidden)}
    out = Path(args.out)
    if args.check:
        outdated = [out / rel for rel, text in course_files(args.src, **kwargs)
                    if not (out / rel).is_file() or (out / rel).read_text(encoding="utf-8") != text]
        for path in outdated:
            print(f"out of date: {path}")
        print(f"{len(outdated)} file(s) out of date in {args.out}" if outdated else "up to date")
        return 1 if outdated else 0
    written = build_course(args.src, out, **kwargs)
    for path in written:
        print(path)
    stems = [p.parent.name for p in written if p.suffix == ".ipynb"]
    print(f"wrote an nbgrader course folder with {len(stems)} assignment(s) to {args.out}; next, in that folder:\n"
          f"  nbgrader generate_assignment {stems[0]}   # the student version in release/\n"
          f"  nbgrader autograde {stems[0]}             # grades submitted/<student>/{stems[0]}/")
    return 0
