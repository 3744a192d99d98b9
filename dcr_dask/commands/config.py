"""Print, validate or compare configurations.

show      print the configuration (defaults, then --preset, --config, --band, --set)
          as YAML, TOML or JSON that --config reads back, or as Python
validate  check it and report every problem, naming the field and the value
diff      report the fields in which two configuration files differ
fields    list every field with its type, default and documentation
"""

from __future__ import annotations

import argparse
import io
import sys

from dcr_dask.commands._common import add_config_arguments, config_from_args
from dcr_dask.config import DcrAssembleCoaddConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``config`` actions to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the configuration")
    add_config_arguments(show)
    show.add_argument(
        "--format",
        choices=["yaml", "toml", "json", "py"],
        default="yaml",
        help="output format; yaml, toml and json read back with --config to the same "
        "configuration (toml leaves out fields holding None, which read back as their "
        "default None, and refuses None where the default is not None)",
    )
    validate = actions.add_parser("validate", help="check a configuration")
    add_config_arguments(validate)
    diff = actions.add_parser("diff", help="compare two configuration files")
    diff.add_argument("first", help="configuration file")
    diff.add_argument("second", help="configuration file")
    diff.add_argument(
        "--allow-python-config", action="store_true", help="allow .py files (they are executed)"
    )
    fields = actions.add_parser("fields", help="list every field and its documentation")
    fields.add_argument("--extensions", action="store_true", help="only dcr_dask's own fields")


def run(args: argparse.Namespace) -> int:
    """Carry out one ``config`` action."""
    return {"show": _show, "validate": _validate, "diff": _diff, "fields": _fields}[args.action](
        args
    )


def _show(args: argparse.Namespace) -> int:
    config = config_from_args(args, validate=False)
    if args.format == "py":
        stream = io.StringIO()
        config.saveToStream(stream)
        sys.stdout.write(stream.getvalue())
    else:
        sys.stdout.write(config.dumps(args.format))
    return 0


def _validate(args: argparse.Namespace) -> int:
    config_from_args(args, validate=True)
    print("configuration is valid")
    return 0


def _diff(args: argparse.Namespace) -> int:
    first = DcrAssembleCoaddConfig.from_file(args.first, allow_python=args.allow_python_config)
    second = DcrAssembleCoaddConfig.from_file(args.second, allow_python=args.allow_python_config)
    lines: list[str] = []
    same = first.compare(second, shortcut=False, output=lines.append)
    for line in lines:
        print(line)
    if same:
        print("no differences")
    return 0 if same else 1


def _fields(args: argparse.Namespace) -> int:
    for spec in DcrAssembleCoaddConfig.fields(recursive=True):
        if args.extensions and not spec.extension:
            continue
        if spec.is_config:
            print(f"{spec.name}  [{spec.type_name}]")
            continue
        extra = "  (dcr_dask extension)" if spec.extension else ""
        extra += f"  (deprecated: {spec.deprecated})" if spec.deprecated else ""
        print(f"{spec.name}  [{spec.type_name}, default {spec.default!r}]{extra}")
        print(f"    {spec.doc}")
    return 0
