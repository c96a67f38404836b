"""Running a study's runs: one function runs one resolved scenario; engines are thin adapters over it.

- local: one run after another on this machine (one emulation per machine: parallel runs distort
  the CPU quotas).
- dask: Dask distributed. Workers run as root with one `emulator` resource each
  (`dask worker ADDR --nworkers 1 --nthreads 1 --resources emulator=1`); every run is submitted with
  resources={"emulator": 1} and its run id as key, so no machine ever holds two emulations. The run
  folder comes back as bytes (a tar) and is unpacked into the study folder. A lost worker's run is
  tried again (`retries`), then recorded as failed with the reason.

Each run is a fresh `run_scenario.py` process with a clean environment (no OMP_NUM_THREADS or
affinity from the engine), so Ctrl-C and SIGTERM reach it as they do a single run: rows kept, the
manifest says interrupted, everything it created removed.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

from splitbed.analysis.report import read_manifest
from splitbed.analysis.study import table_rows, write_table
from splitbed.errors import Terminated, UserError
from splitbed.scenarios.study import REPO, Study, StudyRun, portable

ENV_DROPPED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DASK_", "MALLOC_")


def clean_env() -> dict:
    """The engine's environment less its thread and allocator settings; the run ends with its parent."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ENV_DROPPED)}, "SPLITBED_END_WITH_PARENT": "1"}


def run_command(spec: dict, out: Path) -> list[str]:
    """The run_scenario.py command line of one run (paths inside the repository relative to it)."""
    argv = [sys.executable, str(REPO / "run_scenario.py"), str(REPO / spec["scenario"]), "--out", str(out), "--quiet"]
    for dotted, value in spec["overrides"].items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        argv += ["--set", f"{dotted}={text.removesuffix('...').strip()}"]
    if spec.get("quick"):
        argv.append("--quick")
    if spec.get("oversubscribe"):
        argv.append("--oversubscribe")
    return argv


def execute_run(spec: dict, out: Path) -> dict:
    """Run one resolved scenario into `out`; returns {status, exit code, host, seconds, stderr tail}."""
    started = time.monotonic()
    # its own session: a signal to the engine's process group (a worker's nanny) does not kill it
    # mid-emulation; it ends with its parent through SIGTERM instead, and cleans up (clean_env)
    process = subprocess.Popen(run_command(spec, out), cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = process.communicate()
    except BaseException:  # Ctrl-C or SIGTERM of the study: the run ends like a single run would
        process.terminate()
        process.communicate(timeout=120)
        raise
    manifest = out / "manifest.json"
    status = json.loads(manifest.read_text()).get("status", "unknown") if manifest.exists() else "not started"
    if process.returncode != 0 and status in ("complete", "not started", "unknown"):
        status = f"failed: {(err.strip().splitlines() or ['exit ' + str(process.returncode)])[-1][:300]}"
    return {"status": status, "exit_code": process.returncode, "host": platform.node(),
            "seconds": round(time.monotonic() - started, 1)}


def execute_remote(spec: dict) -> tuple[dict, bytes]:
    """On a Dask worker: run into a temporary folder and return (result, the folder as tar bytes)."""
    with tempfile.TemporaryDirectory(prefix="splitbed-run-") as tmp:
        out = Path(tmp) / "run"
        result = execute_run(spec, out)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            if out.exists():
                tar.add(out, arcname=".")
        return result, buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def is_complete(folder: Path) -> bool:
    return read_manifest(folder).get("status") == "complete"


def killed_at_its_limit(folder: Path) -> bool:
    """The run's edge died of its memory limit: the same code on the same point would die again (run
    ids follow the code's version), so a study does not try it again unless asked."""
    return any(f.get("oom_kills") for f in read_manifest(folder).get("node_failures", []))


def spec_of(study: Study, run: StudyRun, oversubscribe: bool) -> dict:
    return {"run_id": run.run_id, "scenario": portable(str(study.base.resolve())),
            "overrides": portable(run.overrides), "quick": study.quick, "oversubscribe": oversubscribe}


def run_local(study: Study, todo: list[StudyRun], runs_dir: Path, oversubscribe: bool, say) -> dict:
    results = {}
    for i, run in enumerate(todo, 1):
        say(f"[{i}/{len(todo)}] run {run.run_id}: " + ", ".join(f"{k}={v}" for k, v in run.values.items()))
        folder = runs_dir / run.run_id
        if folder.exists():  # an unfinished earlier attempt: start it again from nothing
            for leftover in sorted(folder.rglob("*"), reverse=True):
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
        results[run.run_id] = execute_run(spec_of(study, run, oversubscribe), folder)
        say(f"    {results[run.run_id]['status']} ({results[run.run_id]['seconds']} s)")
    return results


def run_dask(study: Study, todo: list[StudyRun], runs_dir: Path, oversubscribe: bool, say, address: str | None,
             retries: int) -> dict:
    try:
        from distributed import Client, as_completed
    except ImportError as err:
        raise UserError("the dask engine needs Dask distributed", fix="run 'sudo make setup' (it installs it)") from err
    if not address:
        raise UserError("--engine dask needs --address tcp://HOST:8786 (or tls://...)",
                        fix="start 'dask scheduler' and, as root on each machine, "
                            "'dask worker ADDR --nworkers 1 --nthreads 1 --resources emulator=1'")
    try:
        client = Client(address, timeout=20)
    except (OSError, TimeoutError) as err:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    results = {}
    try:
        futures = {client.submit(execute_remote, spec_of(study, run, oversubscribe), key=f"splitbed-{run.run_id}",
                                 resources={"emulator": 1}, retries=retries, pure=False): run for run in todo}
        for done, future in enumerate(as_completed(futures), 1):
            run = futures[future]
            try:
                result, data = future.result()
                unpack(data, runs_dir / run.run_id)
            except Exception as err:  # a lost worker (KilledWorker after its retries) or a broken task
                result = {"status": f"failed: {type(err).__name__}: {err}"[:300], "exit_code": None,
                          "host": None, "seconds": None}
            results[run.run_id] = result
            say(f"[{done}/{len(todo)}] run {run.run_id} on {result.get('host')}: {result['status']}")
    finally:
        client.close()
    return results


def run_study(study: Study, out: Path | None, engine: str = "local", address: str | None = None, retries: int = 1,
              quiet: bool = False, oversubscribe: bool = False, retry_failed: bool = False) -> int:
    """Run every run not complete in the study folder, then write study.csv/.md and plots from all of them.
    A run whose edge was killed at its memory limit is kept as failed, not repeated, unless retry_failed."""
    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    folder = Path(out) if out else study.output / study.name
    runs_dir = folder / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(study.path.read_text())
    todo = [run for run in study.runs if not is_complete(runs_dir / run.run_id)]
    dead = [] if retry_failed else [run for run in todo if killed_at_its_limit(runs_dir / run.run_id)]
    for run in dead:
        say(f"run {run.run_id}: its edge was killed at its memory limit last time; not repeated "
            "(--retry-failed to try again)")
    todo = [run for run in todo if run not in dead]
    say(f"study {study.name}: {len(study.runs)} runs, {len(study.runs) - len(todo) - len(dead)} already complete, "
        f"{len(dead)} not repeated, {len(todo)} to run on the {engine} engine; folder {folder}")
    results: dict = {}
    try:
        if engine == "dask":
            results = run_dask(study, todo, runs_dir, oversubscribe, say, address, retries)
        else:
            results = run_local(study, todo, runs_dir, oversubscribe, say)
    except KeyboardInterrupt as err:
        say("terminated" if isinstance(err, Terminated) else "interrupted: writing the table of what finished")
        raise
    finally:
        write_study_table(study, folder, results)
    return 0


def write_study_table(study: Study, folder: Path, results: dict) -> None:
    records = []
    for run in study.runs:
        run_dir = folder / "runs" / run.run_id
        manifest = read_manifest(run_dir)
        status = results.get(run.run_id, {}).get("status") or manifest.get("status", "not run")
        records.append({"run_id": run.run_id, "values": run.values, "status": status,
                        "folder": f"runs/{run.run_id}", "dir": run_dir})
    write_table(folder, table_rows(records, study.swept), study.swept, study.name)
    (folder / "runs.json").write_text(json.dumps({r["run_id"]: {**results.get(r["run_id"], {}), "status": r["status"],
                                                                "values": r["values"]} for r in records},
                                                 indent=1, default=str) + "\n")
