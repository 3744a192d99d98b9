"""Where a run computes, without running anything: SLURM/PBS specifications (YAML)
and their validation, the job scripts dask-jobqueue would submit, and the option
checks of `dask_client` and `dcr-dask run`."""

import subprocess
import sys
from pathlib import Path

import dask
import pytest

from dcr_dask.cli import build_parser, main
from dcr_dask.commands.run import cluster_options
from dcr_dask.errors import ConfigError, ConfigErrors, DcrDaskError, InputError
from dcr_dask.running.cluster import (
    CLUSTER_KINDS,
    PACKAGED_SPECS,
    ClusterError,
    ClusterOptionError,
    ClusterSpecError,
    dask_client,
    default_cluster_spec,
    load_cluster_spec,
    make_jobqueue_cluster,
    make_security,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[1]
# what a nanny gives its workers, printed by a fresh Python
_NANNY_ENVIRON = (
    "from distributed.nanny import _get_env_variables; "
    'print(_get_env_variables("distributed.nanny.pre-spawn-environ"))'
)
BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]


GOOD = """\
cluster: slurm
queue: short
account: astro
cores: 4
processes: 2
memory: 6GiB
walltime: "00:45:00"
job_script_prologue:
  - module load python/3.12
  - export OMP_NUM_THREADS=1
interface: null
local_directory: /scratch/dcr
log_directory: {logs}
job_extra_directives: ["--qos=debug"]
worker_timeout: 30
adapt:
  minimum_jobs: 1
  maximum_jobs: 3
"""


def _write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_specification_is_read(tmp_path):
    path = _write(tmp_path, GOOD.format(logs=tmp_path / "logs"))
    spec = load_cluster_spec(path, "slurm")
    assert (spec.kind, spec.queue, spec.account) == ("slurm", "short", "astro")
    assert (spec.cores, spec.processes, spec.memory, spec.walltime) == (4, 2, "6GiB", "00:45:00")
    assert spec.job_script_prologue == ("module load python/3.12", "export OMP_NUM_THREADS=1")
    assert spec.job_extra_directives == ("--qos=debug",)
    assert (spec.adaptive, spec.jobs, spec.minimum_jobs, spec.maximum_jobs) == (True, None, 1, 3)
    assert spec.loopback_only and spec.worker_timeout == 30
    assert load_cluster_spec(_write(tmp_path, "", "empty.yaml"), "pbs").jobs == 1


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("queues: short\n", "queues", "unknown key"),
        ("cores: four\n", "cores", "whole number"),
        ("cores: 0\n", "cores", "at least 1"),
        ("cores: true\n", "cores", "whole number"),
        ("memory: lots\n", "memory", "amount of memory"),
        ("walltime: 90 minutes\n", "walltime", "time limit"),
        ("job_script_prologue: module load python\n", "job_script_prologue", "list of strings"),
        ("job_extra_directives: [1, 2]\n", "job_extra_directives", "list of strings"),
        ("jobs: -1\n", "jobs", "at least 1"),
        ("worker_timeout: soon\n", "worker_timeout", "seconds"),
        ("adapt: 4\n", "adapt", "mapping"),
        ("adapt: {minimum_jobs: 5, maximum_jobs: 2}\n", "adapt.minimum_jobs", "greater than"),
        ("adapt: {minimum_jobs: 0, maximum_jobs: 2}\n", "adapt.minimum_jobs", "at least 1"),
        ("adapt: {minimum_jobs: 1, maximum_jobs: 2, step: 1}\n", "adapt.step", "unknown key"),
        ("jobs: 2\nadapt: {minimum_jobs: 1, maximum_jobs: 2}\n", "jobs", "not both"),
        ("cores: 2\nprocesses: 4\n", "processes", "more worker processes than cores"),
        ("cluster: pbs\n", "cluster", "not 'slurm'"),
        ("resource_spec: select=1:ncpus=4\n", "resource_spec", "only for PBS"),
    ],
)
def test_each_bad_specification_names_the_file_and_the_key(tmp_path, text, key, words):
    path = _write(tmp_path, text)
    with pytest.raises(ClusterSpecError) as caught:
        load_cluster_spec(path, "slurm")
    message = str(caught.value)
    assert message.startswith(f"{path}: {key} = "), message
    assert words in message
    assert caught.value.filename == str(path) and caught.value.key == key
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("text", "words"),
    [("cores: [4\n", "not valid YAML"), ("- cores\n- 4\n", "must be a mapping")],
)
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ClusterSpecError, match=words) as caught:
        load_cluster_spec(path, "pbs")
    assert str(caught.value).startswith(f"{path}: ")


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write(tmp_path, "cores: 0\nmemory: lots\nqueues: x\n")
    with pytest.raises(ConfigErrors) as caught:
        load_cluster_spec(path, "slurm")
    assert [e.key for e in caught.value.errors] == ["cores", "memory", "queues"]
    assert all(str(path) in line for line in str(caught.value).splitlines()[1:])


def test_a_missing_adaptive_bound_is_named(tmp_path):
    path = _write(tmp_path, "adapt: {minimum_jobs: 1}\n")
    with pytest.raises(ClusterSpecError) as caught:
        load_cluster_spec(path, "slurm")
    assert str(caught.value) == (
        f"{path}: adapt.maximum_jobs: missing: adapt needs minimum_jobs and maximum_jobs"
    )


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such cluster specification"):
        load_cluster_spec(tmp_path / "nowhere.yaml", "slurm")


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_the_packaged_specifications_are_the_documented_ones(kind):
    packaged = default_cluster_spec(kind)
    assert packaged.parent == PACKAGED_SPECS
    assert packaged.read_bytes() == (REPO / "deploy" / f"{kind}.yaml").read_bytes()
    spec = load_cluster_spec(None, kind)
    assert spec.kind == kind and spec.path == str(packaged)
    assert sorted(p.name for p in PACKAGED_SPECS.glob("*.yaml")) == ["pbs.yaml", "slurm.yaml"]


def test_the_slurm_job_script_follows_the_specification(tmp_path):
    path = _write(tmp_path, GOOD.format(logs=tmp_path / "logs"))
    cluster = make_jobqueue_cluster(load_cluster_spec(path, "slurm"))
    try:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert not cluster.workers  # nothing submitted
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in (
        "#SBATCH -p short",
        "#SBATCH -A astro",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=6G",
        "#SBATCH -t 00:45:00",
        "#SBATCH --qos=debug",
        f"#SBATCH -o {tmp_path / 'logs'}/dcr-dask-worker-%J.out",
    ):
        assert directive in lines, (directive, script)
    assert "module load python/3.12" in lines and "export OMP_NUM_THREADS=1" in lines
    # the workers' nanny drops distributed's MALLOC_TRIM_THRESHOLD_, as on a local cluster
    (keep,) = [line for line in lines if "PRE_SPAWN_ENVIRON" in line]
    assert lines.index(keep) > lines.index("export OMP_NUM_THREADS=1")
    environ = subprocess.run(
        ["bash", "-c", f"{keep} && {sys.executable} -c '{_NANNY_ENVIRON}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "MALLOC_TRIM_THRESHOLD_" not in environ and "OMP_NUM_THREADS" in environ
    command = lines[-1]
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:")
    for part in ("--nthreads 2", "--nworkers 2", "--memory-limit 3.00GiB"):
        assert part in command
    assert "--local-directory /scratch/dcr" in command
    assert "--host 127.0.0.1" in command  # a loopback scheduler: loopback workers


def test_the_pbs_job_script_and_the_command_line_overrides(tmp_path):
    path = _write(
        tmp_path,
        'queue: workq\ncores: 2\nmemory: 4GiB\nwalltime: "00:10:00"\n'
        "job_script_prologue: [source /opt/env.sh]\ninterface: lo\njobs: 3\n",
    )
    spec = with_overrides(
        load_cluster_spec(path, "pbs"), n_workers=5, threads_per_worker=3, memory_limit="2GiB"
    )
    assert (spec.jobs, spec.cores, spec.memory) == (5, 3, str(2 * 2**30))
    cluster = make_jobqueue_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#PBS -q workq" in script and "#PBS -l walltime=00:10:00" in script
    assert "#PBS -l select=1:ncpus=3:mem=2048MB" in script
    assert "source /opt/env.sh" in script
    assert "--interface lo" in script and "--host 127.0.0.1" not in script
    unchanged = with_overrides(load_cluster_spec(path, "pbs"), memory_limit="auto")
    assert (unchanged.jobs, unchanged.cores, unchanged.memory) == (3, 2, "4GiB")


def test_workers_override_adaptive_scaling(tmp_path):
    spec = load_cluster_spec(_write(tmp_path, GOOD.format(logs=tmp_path)), "slurm")
    fixed = with_overrides(spec, n_workers=3)  # 2 processes a job: 2 jobs
    assert (fixed.adaptive, fixed.jobs) == (False, 2)
    with pytest.raises(ClusterOptionError, match="fraction"):
        with_overrides(spec, memory_limit=0.5)
    with pytest.raises(ClusterOptionError, match="--workers 0"):
        with_overrides(spec, n_workers=0)


def test_a_missing_dask_jobqueue_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ClusterError, match=r'pip install "dcr-dask\[jobqueue\]"'):
        make_jobqueue_cluster(load_cluster_spec(None, "slurm"))


def test_tls_with_a_temporary_certificate_needs_a_shared_directory():
    spec = load_cluster_spec(None, "slurm")
    with pytest.raises(ClusterSpecError, match="shared_temp_directory"):
        make_jobqueue_cluster(spec, security=make_security(tls=True))


def test_an_unknown_cluster_is_refused_naming_the_choices():
    with (
        pytest.raises(ValueError, match=r"'bogus'.*'local', 'slurm', 'pbs'"),
        dask_client(cluster="bogus"),
    ):
        pass
    assert CLUSTER_KINDS == ("local", "slurm", "pbs")


def test_run_refuses_an_unknown_cluster(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["run", "w.fits", "--output", "x.zarr", "--cluster", "bogus"])
    assert caught.value.code == 2
    assert "bogus" in capsys.readouterr().err


def test_run_refuses_a_scheduler_with_a_batch_cluster(tmp_path, capsys):
    warp = tmp_path / "w.fits"
    warp.touch()
    output = tmp_path / "x.zarr"
    argv = ["-q", "run", str(warp), "--output", str(output), *BAND]
    code = main([*argv, "--scheduler", "tcp://127.0.0.1:9", "--cluster", "slurm"])
    assert code == 1
    assert "mutually exclusive" in capsys.readouterr().err
    bad = _write(tmp_path, "cores: 0\n")
    assert main([*argv, "--cluster", "pbs", "--cluster-spec", str(bad)]) == 1
    assert f"{bad}: cores = 0" in capsys.readouterr().err
    assert not output.exists()


def test_run_passes_the_cluster_options():
    parser = build_parser()
    args = parser.parse_args(["run", "w.fits", "--output", "x.zarr"])
    options = cluster_options(args)
    assert options["cluster"] == "local" and options["cluster_spec"] is None
    assert (options["n_workers"], options["threads_per_worker"]) == (None, None)
    assert options["memory_limit"] == "auto" and options["tls"] is False
    assert options["scheduler_address"] is None
    # without --scheduler or --cluster, the Dask config may name the scheduler
    with dask.config.set({"scheduler-address": "tcp://10.0.0.5:8786"}):
        assert cluster_options(args)["scheduler_address"] == "tcp://10.0.0.5:8786"
        local = parser.parse_args(["run", "w.fits", "--output", "x.zarr", "--cluster", "local"])
        assert cluster_options(local)["scheduler_address"] is None
    args = parser.parse_args(
        [
            "run",
            "w.fits",
            "--output",
            "x.zarr",
            "--cluster",
            "pbs",
            "--cluster-spec",
            "my.yaml",
            "--workers",
            "4",
            "--memory-limit",
            "3GiB",
            "--tls",
            "--tls-ca-file",
            "ca.pem",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ]
    )
    options = cluster_options(args)
    assert (options["cluster"], options["cluster_spec"], options["n_workers"]) == (
        "pbs",
        "my.yaml",
        4,
    )
    assert options["memory_limit"] == "3GiB" and options["tls"] is True
    assert (options["tls_ca_file"], options["tls_cert"], options["tls_key"]) == (
        "ca.pem",
        "cert.pem",
        "key.pem",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"cluster_spec": "x.yaml"}, ClusterOptionError, "--cluster slurm"),
        ({"tls_cert": "cert.pem"}, ClusterOptionError, "--tls-ca-file"),
        ({"tls_ca_file": "nowhere.pem", "tls_cert": "nowhere.pem"}, InputError, "nowhere.pem"),
        ({"scheduler_address": "tls://127.0.0.1:9"}, ClusterOptionError, "uses TLS"),
        ({"scheduler_address": "tcp://127.0.0.1:9", "tls": True}, ClusterOptionError, "files"),
    ],
)
def test_options_that_do_not_go_together(tmp_path, monkeypatch, kwargs, error, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=words) as caught, dask_client(**kwargs):
        pass
    assert isinstance(caught.value, DcrDaskError)


@pytest.mark.parametrize(("kind", "command"), [("slurm", "sbatch"), ("pbs", "qsub")])
def test_no_submit_command_is_a_clear_error(tmp_path, monkeypatch, kind, command):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match=f"{command} is not on PATH"), dask_client(cluster=kind):
        pass


def _trim_threshold():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.parametrize(("configured", "expected"), [(65536, None), (1 << 20, str(1 << 20))])
def test_local_workers_keep_the_allocator_adaptive_unless_told(monkeypatch, configured, expected):
    """distributed's own MALLOC_TRIM_THRESHOLD_ (65536) is not given to a local cluster's
    workers, whose glibc then reuses the fit's large arrays; a value the user configured
    is kept."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    with dask.config.set({key: configured}), dask_client(n_workers=1) as client:
        (seen,) = client.run(_trim_threshold).values()
        assert dask.config.get(key) == configured
    assert seen == expected
