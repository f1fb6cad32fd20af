"""prepare on more than one machine: the Dask backend, Slurm arrays, --finalize."""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

from featprep.demo import DEMO_LABELS
from featprep.errors import ArgumentError, OutputError
from featprep.pipeline import prepare, slurm_array_task

from .conftest import NO_LABELS
from .test_failures import featprep, one_line

#: the aligner on the demo in seconds, not minutes: few iterations, no bootstrap synthesis
QUICK_ALIGN = [
    "labels.source=align",
    "align.iterations=2",
    "align.mixtures=1",
    "align.bootstrap_voices=[]",
    "acoustic.enabled=false",
    "shards.max_seconds=10",
]


def _files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (manifest, rejections, shards, aligner), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _assert_same_files(a: Path, b: Path, close: tuple[str, ...] = ()) -> None:
    """Every file of ``a`` equals ``b``'s byte for byte; those named in ``close`` (.npz)
    hold the same arrays up to float32 rounding (a model trained on other data differs by
    far more)."""
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert [name for name in fa if fa[name] != fb[name] and name not in close] == []
    assert "manifest.json" in fa and any(name.endswith("audio.npy") for name in fa)
    for name in close:
        with np.load(a / name) as x, np.load(b / name) as y:
            assert x.files == y.files
            for key in x.files:
                if x[key].dtype.kind == "f":
                    np.testing.assert_allclose(x[key], y[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")
                else:
                    assert np.array_equal(x[key], y[key]), f"{name}: {key}"


#: the aligner's model, trained by another process than the reference's: in two of four runs
#: of the concurrent test its means differed by up to 3e-7 (float32 rounding; cause not found,
#: five `featprep align` runs in a row gave the same bytes) while the labels, shards and
#: manifest made with it were the same bytes
MODEL_FILE = ("align/aligner.npz",)


def _last_bar(stderr: str, unit: str) -> tuple[int, int]:
    """(done, total) of the last state drawn of the progress bar counting ``unit``."""
    states = re.findall(rf"(\d+)/(\d+) \[[^\]]*{unit}/s\]", stderr)
    assert states, stderr
    return int(states[-1][0]), int(states[-1][1])


def test_dask_local_cluster_gives_the_loky_run_byte_for_byte_with_progress(demo_corpus, tmp_path, capsys):
    """--backend dask without an address: featprep's own LocalCluster (2 worker processes on
    the loopback address); every file of the output equals a loky run's, manifest included,
    and the per-utterance bar reaches its total on both."""
    root, sets = demo_corpus / "VCTK-Corpus", [*DEMO_LABELS["vctk-0.80"], "shards.max_seconds=20"]
    said: list[str] = []
    loky = prepare("vctk", root, tmp_path / "loky", overrides=sets, jobs=2, progress=True)
    loky_bar = _last_bar(capsys.readouterr().err, "utt")
    dask = prepare(
        "vctk",
        root,
        tmp_path / "dask",
        overrides=sets,
        jobs=2,
        backend="dask",
        progress=True,
        log=said.append,
    )
    dask_bar = _last_bar(capsys.readouterr().err, "utt")
    assert loky.shards_written == dask.shards_written > 3
    assert any(re.match(r"dask: 2 workers at tcp://127\.0\.0\.1:\d+$", line) for line in said), said
    _assert_same_files(tmp_path / "loky", tmp_path / "dask")
    assert loky_bar == dask_bar and dask_bar[0] == dask_bar[1] > 0


@pytest.fixture(scope="module")
def aligned_reference(demo_corpus, tmp_path_factory):
    """A single loky prepare with the aligner, made in ``out`` and moved to ``reference``: the
    recipe records OUT/align, so a run to compare with it writes to the same ``out``."""
    base = tmp_path_factory.mktemp("aligned")
    out, reference = base / "out", base / "reference"
    prepare("vctk", demo_corpus / "VCTK-Corpus", out, overrides=QUICK_ALIGN, jobs=2)
    out.rename(reference)
    return out, reference


@pytest.fixture()
def dask_cluster():
    """A dask.distributed cluster of 2 worker processes on the loopback address."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


def test_dask_scheduler_address_aligns_and_shards_on_its_workers(
    demo_corpus, aligned_reference, dask_cluster
):
    """--scheduler ADDR: the aligner's speakers and the shards are tasks of that cluster, and
    every file (OUT/align included) equals the loky run's."""
    out, reference = aligned_reference
    cluster, client = dask_cluster
    try:
        with get_task_stream(client) as stream:
            report = prepare(
                "vctk",
                demo_corpus / "VCTK-Corpus",
                out,
                overrides=QUICK_ALIGN,
                backend="dask",
                scheduler=cluster.scheduler_address,
            )
        assert report.complete
        ran = {re.sub(r"_\d+_calls-[0-9a-f]+$", "", task["key"]) for task in stream.data}
        assert {"batch_of__align_speaker", "batch_of_shard_in_worker"} <= ran, ran
        _assert_same_files(out, reference, close=MODEL_FILE)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _prepare_cli(root: Path, out: Path, sets: list[str], *options: str) -> list[str]:
    """The command line of ``featprep prepare vctk`` (one process) with ``sets`` and ``options``."""
    command = [sys.executable, "-m", "featprep", "prepare", "vctk", "--root", str(root), "--out", str(out)]
    return command + [x for s in sets for x in ("--set", s)] + ["-j", "1", *options]


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(finished.stdout)


def test_two_concurrent_array_tasks_then_finalize_give_the_single_run(demo_corpus, tmp_path):
    """Two --shard-index runs started together on one folder both finish (neither removes
    the shard the other is writing), a dead writer's temporary goes, and --finalize writes
    the manifest of a single run, byte for byte."""
    root, sets = demo_corpus / "VCTK-Corpus", [*NO_LABELS, "shards.max_seconds=5"]
    single = prepare("vctk", root, tmp_path / "single", overrides=sets)
    assert single.shards_written > 6
    out = tmp_path / "array"
    dead = out / "shards" / "train" / f".shard-000003.tmp-{socket.gethostname()}-{_dead_pid()}"
    dead.mkdir(parents=True)
    tasks = [
        subprocess.Popen(
            _prepare_cli(root, out, sets, "--shard-index", str(i), "--num-shards", "2", "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(task.wait(timeout=300), *task.communicate()) for task in tasks]
    assert [code for code, _, _ in results] == [0, 0], results
    assert not dead.exists()
    finalize = subprocess.run(
        _prepare_cli(root, out, sets, "--finalize", "-q"), capture_output=True, text=True
    )
    assert finalize.returncode == 0, finalize.stderr
    assert f"shards: 0 written, {single.shards_written} already complete" in finalize.stdout
    _assert_same_files(tmp_path / "single", out)


def test_finalize_names_the_missing_shards(demo_corpus, tmp_path):
    root, sets = demo_corpus / "VCTK-Corpus", [*NO_LABELS, "shards.max_seconds=20"]
    done = prepare("vctk", root, tmp_path, overrides=sets, shard_index=0, num_shards=2)
    assert done.shards_pending > 0
    with pytest.raises(
        OutputError, match=rf"cannot finalize .*: {done.shards_pending} of \d+ shards missing"
    ):
        prepare("vctk", root, tmp_path, overrides=sets, finalize=True)
    r = featprep(*_prepare_cli(root, tmp_path, sets, "--finalize", "-q")[3:])
    total = done.shards_pending + done.shards_written
    line = one_line(r, "cannot finalize", f"{done.shards_pending} of {total} shards missing")
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.glob("shards/*/shard-*")]
    assert len(written) == done.shards_written and not [name for name in written if name in line]
    assert len(re.findall(r"shards/\w+/shard-\d{6}", line)) == done.shards_pending
    assert not (tmp_path / "manifest.json").exists()


def test_concurrent_array_tasks_train_the_aligner_once(aligned_reference, demo_corpus):
    """With the aligner as label source, every array task starts by aligning OUT/align: the
    first trains, the other waits for it and reuses its model and labels; --finalize then
    gives the single run's files, OUT/align included."""
    out, reference = aligned_reference
    root = demo_corpus / "VCTK-Corpus"
    try:
        tasks = [
            subprocess.Popen(
                _prepare_cli(root, out, QUICK_ALIGN, "--shard-index", str(i), "--num-shards", "2"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        results = [(task.wait(timeout=600), *task.communicate()) for task in tasks]
        assert [code for code, _, _ in results] == [0, 0], results
        logs = [err for _, _, err in results]
        assert sum("model trained" in log for log in logs) == 1, logs
        assert sum("waiting for another process aligning" in log for log in logs) == 1, logs
        finalize = subprocess.run(_prepare_cli(root, out, QUICK_ALIGN, "--finalize"), capture_output=True)
        assert finalize.returncode == 0, finalize.stderr
        _assert_same_files(out, reference, close=MODEL_FILE)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_slurm_array_environment_gives_the_shard_index(demo_corpus, tmp_path, monkeypatch):
    """--array=4-5: task id 5 is shard index 1 of 2 for the command; the library function
    never reads the environment (a notebook or a test inside an array job stays whole)."""
    root, sets = demo_corpus / "VCTK-Corpus", [*NO_LABELS, "shards.max_seconds=20"]
    explicit = prepare("vctk", root, tmp_path / "explicit", overrides=sets, shard_index=1, num_shards=2)
    slurm = {"ID": "5", "MIN": "4", "MAX": "5", "COUNT": "2", "STEP": "1"}
    environ = {**os.environ, **{f"SLURM_ARRAY_TASK_{k}": v for k, v in slurm.items()}}
    command = _prepare_cli(root, tmp_path / "env", sets)
    r = subprocess.run(command, capture_output=True, text=True, env=environ)
    assert r.returncode == 0, r.stderr
    assert "Slurm array task: shard index 1 of 2" in r.stderr
    assert sorted(p.name for p in (tmp_path / "env").glob("shards/*/*")) == sorted(
        p.name for p in (tmp_path / "explicit").glob("shards/*/*")
    )
    assert explicit.shards_pending > 0 and not (tmp_path / "env" / "manifest.json").exists()
    for name, value in slurm.items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", value)
    whole = prepare("vctk", root, tmp_path / "whole", overrides=sets)
    assert whole.complete and whole.shards_pending == 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ID": "3", "COUNT": "4"}, (3, 4)),
        ({"ID": "1", "MIN": "1", "COUNT": "8"}, (0, 8)),
        ({"ID": "8", "MIN": "1", "COUNT": "8"}, (7, 8)),
        ({"ID": "14", "MIN": "2", "STEP": "4", "COUNT": "4"}, (3, 4)),
        ({}, None),
    ],
)
def test_slurm_array_task_numbering(env, expected):
    assert slurm_array_task({f"SLURM_ARRAY_TASK_{k}": v for k, v in env.items()}) == expected


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ID": "0", "MIN": "1", "COUNT": "8"}, "SLURM_ARRAY_TASK_ID=0 is not one of the 8 tasks"),
        ({"ID": "9", "MIN": "1", "COUNT": "8"}, "SLURM_ARRAY_TASK_ID=9 is not one of the 8 tasks"),
        ({"ID": "5", "MIN": "1", "COUNT": "3"}, "evenly stepped"),  # --array=1,4,5
        ({"ID": "4", "MIN": "1", "STEP": "2", "COUNT": "3"}, "by SLURM_ARRAY_TASK_STEP=2"),
        ({"ID": "x", "COUNT": "2"}, "whole numbers"),
        ({"ID": "1"}, "whole numbers in SLURM_ARRAY_TASK_ID='1'"),  # no COUNT
    ],
)
def test_slurm_array_nonsense_is_one_line(env, fragment, demo_corpus, tmp_path):
    with pytest.raises(ArgumentError, match=re.escape(fragment)):
        slurm_array_task({f"SLURM_ARRAY_TASK_{k}": v for k, v in env.items()})
    environ = {**os.environ, **{f"SLURM_ARRAY_TASK_{k}": v for k, v in env.items()}}
    command = _prepare_cli(demo_corpus / "VCTK-Corpus", tmp_path, NO_LABELS, "-q")
    r = subprocess.run(command, capture_output=True, text=True, env=environ)
    one_line(r, fragment)
    assert not tmp_path.joinpath("shards").exists()


def test_dask_backend_arguments_are_one_line(demo_corpus, tmp_path):
    root = demo_corpus / "VCTK-Corpus"
    with pytest.raises(ArgumentError, match="needs backend 'dask'"):
        prepare("vctk", root, tmp_path, overrides=NO_LABELS, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ArgumentError, match="backend must be one of loky, dask; found 'ray'"):
        prepare("vctk", root, tmp_path, overrides=NO_LABELS, backend="ray")
    with pytest.raises(ArgumentError, match="finalize .* takes no shard_index"):
        prepare("vctk", root, tmp_path, overrides=NO_LABELS, finalize=True, shard_index=0, num_shards=2)
    # a closed port on the loopback address: refused until dask's connect timeout
    environ = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    command = _prepare_cli(
        root, tmp_path, NO_LABELS, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9", "-q"
    )
    one_line(
        subprocess.run(command, capture_output=True, text=True, env=environ),
        "cannot reach the Dask scheduler",
    )
    # without the optional extra: the interpreter finds no distributed package
    blocked = "import sys; sys.modules['distributed'] = None; from featprep.cli import main; main()"
    command = [
        sys.executable,
        "-c",
        blocked,
        *_prepare_cli(root, tmp_path, NO_LABELS, "--backend", "dask")[3:],
    ]
    one_line(subprocess.run(command, capture_output=True, text=True), "pip install 'featprep[dask]'")
    assert list(tmp_path.iterdir()) == []


def test_each_worker_thread_builds_its_own_stages(demo_corpus):
    """A Dask worker may run tasks in several threads; stages keep per-shard state, so two
    threads of one run must not share them (one thread reuses its own across shards)."""
    from threading import Thread

    from featprep.recipe import load_corpus_recipe
    from featprep.shardwork import _stages_of_worker

    root = demo_corpus / "VCTK-Corpus"
    recipe = load_corpus_recipe("vctk", root, None, NO_LABELS)
    built: list[list] = []

    def work() -> None:
        first = _stages_of_worker(recipe, str(root), {}, "run-1")
        assert _stages_of_worker(recipe, str(root), {}, "run-1") is first
        built.append(first)

    threads = [Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 2 and built[0] is not built[1]
    assert not {id(stage) for stage in built[0]} & {id(stage) for stage in built[1]}


def test_a_scheduler_without_workers_is_one_line(demo_corpus, tmp_path, monkeypatch):
    from featprep import workers

    monkeypatch.setattr(workers, "WORKER_WAIT_S", 1.0)
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with pytest.raises(ArgumentError, match=rf"scheduler at '{address}' has no worker after 1 s"):
            prepare(
                "vctk",
                demo_corpus / "VCTK-Corpus",
                tmp_path,
                overrides=NO_LABELS,
                backend="dask",
                scheduler=address,
            )
    assert list(tmp_path.iterdir()) == []


def test_another_server_on_the_port_is_one_line_not_a_hang(monkeypatch):
    """A plain TCP server that never answers Dask's handshake (an HTTP server, say):
    distributed's own connect timeout does not end the wait; featprep's does."""
    from featprep import workers

    monkeypatch.setattr(workers, "CONNECT_S", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        said = rf"no Dask scheduler answered at '{address}' within 1 s"
        with pytest.raises(ArgumentError, match=said), workers.dask_client(1, address):
            pass


def test_an_address_without_a_port_is_one_line_at_once():
    from featprep import workers

    with (
        pytest.raises(ArgumentError, match="missing port number in address 'garbage'"),
        workers.dask_client(1, "garbage"),
    ):
        pass
