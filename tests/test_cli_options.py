"""Every command-line value is checked by argparse, before anything starts: a one-line
error that names the flag and the value, and exit status 2."""

from __future__ import annotations

import pytest

from dcr_dask.cli import main

RUN = ["run", "warps/", "--output", "coadd.zarr"]
INGEST = ["ingest", "warps/", "--output", "warps.zarr"]


def _case(command, flag, value, reason):
    return pytest.param([*command, f"{flag}={value}"], flag, value, reason, id=f"{flag}={value}")


BAD = [
    _case(RUN, "--workers", "0", "must be at least 1"),
    _case(RUN, "--workers", "-1", "must be at least 1"),
    _case(RUN, "--workers", "two", "not a whole number"),
    _case(RUN, "--threads-per-worker", "0", "must be at least 1"),
    _case(RUN, "--memory-budget", "-5", "must be more than 0"),
    _case(RUN, "--memory-budget", "nan", "must be more than 0"),
    _case(RUN, "--memory-budget", "lots", "not a number"),
    _case(RUN, "--memory-limit", "garbage", "not an amount of memory"),
    _case(RUN, "--memory-limit", "0GB", "not an amount of memory"),
    _case(RUN, "--scheduler", "10.0.0.5", "missing port number"),
    _case(RUN, "--scheduler", "tcp://host:port", "not a scheduler address"),
    _case(RUN, "--scheduler", "http://host:8786", "unknown address scheme 'http'"),
    _case(RUN, "--scheduler", "tcp://host:99999", "not a scheduler address"),
    _case(INGEST, "--workers", "0", "must be at least 1"),
    _case(["demo"], "--workers", "0", "must be at least 1"),
    _case(["simulate", "sim/"], "--seed", "-1", "must be at least 0"),
    pytest.param(["demo", "--size", "64", "0"], "--size", "0", "at least 1", id="--size 64 0"),
]


@pytest.mark.parametrize(("argv", "flag", "value", "reason"), BAD)
def test_bad_values_are_refused_by_argparse_naming_flag_and_value(
    argv, flag, value, reason, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"dcr-dask {argv[0]}: error: argument {flag}: '{value}'"), error
    assert reason in error, error


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--workers", "3", 3),
        ("--memory-limit", "auto", "auto"),
        ("--memory-limit", "4GiB", "4GiB"),
        ("--memory-budget", "inf", float("inf")),
        ("--scheduler", "tls://10.0.0.5:8786", "tls://10.0.0.5:8786"),
        ("--scheduler", "tcp://[::1]:8786", "tcp://[::1]:8786"),
    ],
)
def test_good_values_pass(flag, value, expected):
    from dcr_dask.cli import build_parser

    args = build_parser().parse_args([*RUN, flag, value])
    assert getattr(args, flag.removeprefix("--").replace("-", "_")) == expected


@pytest.mark.parametrize("position", ["before", "after"])
def test_quiet_and_verbose_work_before_or_after_the_subcommand(position, tmp_path, capsys):
    simulate = ["simulate", str(tmp_path / position), "--size", "48", "48"]
    for flag, logged in (("-q", False), ("-v", True)):
        argv = [flag, *simulate] if position == "before" else [*simulate, flag]
        assert main([*argv, "--overwrite"]) == 0
        stderr = capsys.readouterr().err
        assert ("INFO dcr_dask.simulate" in stderr) is logged, (argv, stderr)
    band = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
    assert main(["config", "validate", *band, "--quiet"]) == 0  # after a nested subcommand


def test_quiet_and_verbose_together_are_refused_in_any_position(capsys):
    for argv in (["-q", "config", "show", "-v"], ["config", "show", "-v", "-q"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err
