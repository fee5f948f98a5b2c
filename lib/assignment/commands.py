"""The assignment's sub-commands of ``python -m lib``: ``declare``, ``handin`` and ``check`` (parsers and what they do).

``lib.cli`` adds these parsers with :func:`add_parsers` and hands a parsed ``declare``, ``handin`` or ``check``
to :func:`run`. A mistake is one line on stderr and exit code 2, and nothing is written.
What this is not: the logic (``declare``, ``handin``, ``check``), or the rest of the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from lib.errors import EXIT_OK, HypertuneError

COMMANDS = ("declare", "handin", "check")
_FORMAT = argparse.RawDescriptionHelpFormatter


def _parser(commands: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=summary, epilog=f"example:\n  {example}", formatter_class=_FORMAT
    )


def add_parsers(commands: Any) -> None:
    """Add ``declare``, ``handin`` and ``check`` to the sub-command parsers ``commands``."""
    declare = _parser(
        commands,
        "declare",
        "record your hypothesis and decision rule (or the final choice) with a timestamp, before the runs",
        'python -m lib declare --experiment mine --hypothesis "dropout 0.3 '
        'beats 0 with BatchNorm" --rule "supported if the paired 95% CI lies above 0" --factor '
        "dropout_p --values 0,0.3 --nuisance lr=0.003 --seeds 0,1,2",
    )
    declare.add_argument("--experiment", required=True, help="the MLflow experiment the runs will go to")
    declare.add_argument("--hypothesis", help="the hypothesis in one sentence")
    declare.add_argument(
        "--rule", help="the decision rule: what is compared, what counts, what an interval across 0 means"
    )
    declare.add_argument("--factor", help="the hyperparameter you vary (scientific), e.g. dropout_p")
    declare.add_argument("--values", help="its values, comma-separated, e.g. 0,0.3")
    declare.add_argument(
        "--nuisance",
        action="append",
        default=[],
        metavar="NAME=VALUE|tune",
        help="a nuisance hyperparameter held at VALUE (a caveat) or tuned per arm (tune); repeatable",
    )
    declare.add_argument("--seeds", help="the paired seeds every arm gets, e.g. 0,1,2")
    declare.add_argument(
        "--final",
        action="store_true",
        help="declare the final configuration instead (--config, --criterion), before the test set is read",
    )
    declare.add_argument("--config", action="append", default=[], metavar="NAME=VALUE", help="with --final: a setting")
    declare.add_argument("--criterion", help="with --final: the success criterion, e.g. 'test accuracy >= 85%%'")
    handin = _parser(
        commands,
        "handin",
        "pack your notebooks and every run of your experiments into one .zip to hand in",
        "python -m lib handin --experiment 01_hypothesis --notebook notebooks/01_hypothesis.ipynb --out alice.zip",
    )
    handin.add_argument("--experiment", action="append", required=True, help="an experiment to hand in (repeatable)")
    handin.add_argument("--notebook", action="append", required=True, type=Path, help="a notebook (repeatable)")
    handin.add_argument("--out", required=True, type=Path, help="the hand-in file, NAME.zip")
    handin.add_argument("--student", help="your name as the teacher knows it (default: your login or the file name)")
    check = _parser(
        commands,
        "check",
        "score the rubric's machine-checkable criteria, with evidence, for an "
        "experiment, hand-ins or a class server's users",
        "python -m lib check --handin handins/ --csv class.csv",
    )
    check.add_argument("--experiment", action="append", default=[], help="an experiment of the current store")
    check.add_argument("--handin", action="append", default=[], type=Path, help="a hand-in .zip or a folder of them")
    check.add_argument("--server", help="a class server's URL; with --users or --roster")
    check.add_argument("--users", help="with --server: comma-separated logins")
    check.add_argument("--roster", type=Path, help="with --server: the class roster (one login per line)")
    check.add_argument("--csv", type=Path, help="also write the table and evidence to this CSV file")
    check.add_argument("--stores", type=Path, help="with --handin: keep each imported store in DIR/<hand-in name>/")


def _list(text: str | None, option: str) -> list[Any]:
    if not text:
        return []
    try:
        return [yaml.safe_load(part) for part in text.split(",") if part.strip()]
    except yaml.YAMLError:
        raise HypertuneError(f"{option} {text!r}: give comma-separated values, e.g. {option} 0,0.3") from None


def _pairs(items: list[str], option: str) -> dict[str, Any]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise HypertuneError(f"{option} {item!r}: give NAME=VALUE, e.g. {option} lr=0.003")
        pairs[name.strip()] = yaml.safe_load(value)
    return pairs


def _declare(args: argparse.Namespace) -> int:
    from lib.assignment.declarations import declare, declare_final

    if args.final:
        found = declare_final(args.experiment, _pairs(args.config, "--config"), args.criterion or "")
    else:
        nuisance = _pairs(args.nuisance, "--nuisance")
        seeds = _list(args.seeds, "--seeds")
        found = declare(
            args.experiment,
            args.hypothesis or "",
            args.rule or "",
            args.factor,
            _list(args.values, "--values"),
            nuisance,
            seeds,
        )
    print(found)
    return EXIT_OK


def _handin(args: argparse.Namespace) -> int:
    from lib.assignment.handin import pack

    notes = pack(args.experiment, args.notebook, args.out, args.student)
    print(
        f"hand-in written: {args.out} ({args.out.stat().st_size / 1e3:.0f} kB: {len(args.notebook)} notebook(s), "
        f"the runs of {', '.join(args.experiment)})"
    )
    for note in notes:
        print(f"note: {note}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from lib.assignment import class_check as check

    given = [bool(args.experiment), bool(args.handin), bool(args.server)]
    if sum(given) != 1:
        raise HypertuneError("give one of --experiment NAME, --handin PATH or --server URL (with --users or --roster)")
    if args.csv is not None and not args.csv.parent.is_dir():
        raise HypertuneError(f"--csv {args.csv}: the folder {args.csv.parent} does not exist")
    with check._quiet():
        if args.experiment:
            studies = check.from_store(args.experiment)
        elif args.handin:
            studies = check.from_handins(args.handin, args.stores)
        else:
            users = (
                _list(args.users, "--users") if args.users else check.roster_users(args.roster) if args.roster else []
            )
            studies = check.from_server(args.server, [str(u) for u in users])
        results = check.rows(studies)
    print(check.table(results))
    if args.csv is not None:
        check.write_csv(results, args.csv)
        print(f"\nCSV written: {args.csv} ({len(results)} rows)")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run ``declare``, ``handin`` or ``check``; a :class:`~lib.errors.HypertuneError` is one line and its code."""
    try:
        return {"declare": _declare, "handin": _handin, "check": _check}[args.command](args)
    except HypertuneError as exc:
        print(f"{args.command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
