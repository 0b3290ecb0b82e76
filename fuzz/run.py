"""Run the fuzz targets under atheris (libFuzzer), each in its own process, and report what they found.

    python fuzz/run.py all --seconds 60            # a campaign: one minute per target
    python fuzz/run.py frame manifest --runs 20000  # a bounded run of two targets
    python fuzz/run.py all --runs 2000 --seed 1 --json

Each target starts from its seed corpus (``fuzz/corpus/<target>/``, read only: new inputs go to a
temporary working corpus unless ``--corpus-out DIR``) with its dictionary, ``-max_len``, a per-input
``-timeout`` and an ``-rss_limit_mb``. Findings (an uncaught exception, a timeout, an out-of-memory)
are copied to ``--artifacts DIR`` (default: a temporary directory, printed). With ``--keep-going`` a
target is restarted after a crash with that crash's signature (exception type and innermost source
line) ignored, so one campaign can find several distinct bugs. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIG_ENV = "EC_FUZZ_IGNORE_SIGNATURES"
#: Modules that compare numpy arrays: atheris 3.0.0's comparison tracing (``_trace_cmp``) leaks the array
#: each such comparison returns (~16 KB per chunker run, an out-of-memory after some 25k runs), so these
#: get branch coverage only, without comparison tracing.
CONTROL_FLOW_ONLY = ("ec_node.ts.chunker", "ec_node.ts.pcr")
SIG_MARK = "EC-FUZZ-SIGNATURE: "
MAX_RESTARTS = 20


# ---------------------------------------------------------------------------------- the child


def signature(exc: BaseException) -> str:
    """``Type@file:line`` of the innermost ec_node frame (else the innermost): one bug, one signature."""
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if f"{os.sep}ec_node{os.sep}" in f.filename]
    inner = (ours or tb or [None])[-1]
    where = f"{Path(inner.filename).name}:{inner.lineno}" if inner else "?"
    return f"{type(exc).__name__}@{where}"


def _instrument_control_flow(module: types.ModuleType) -> None:
    """Branch-coverage instrumentation of the functions and methods defined in ``module`` (no dataflow)."""
    from atheris.instrument_bytecode import patch_code

    def patch(fn: object) -> None:
        if isinstance(fn, types.FunctionType) and fn.__module__ == module.__name__:
            fn.__code__ = patch_code(fn.__code__, trace_dataflow=False)

    for obj in vars(module).values():
        patch(obj)
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for attr in vars(obj).values():
                for fn in (attr, getattr(attr, "__func__", None), getattr(attr, "fget", None)):
                    patch(fn)


def child(name: str, libfuzzer_args: list[str]) -> None:
    """Fuzz one target in this process (never returns: libFuzzer exits)."""
    import logging

    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["ec_node"], exclude=list(CONTROL_FLOW_ONLY)):
        import targets
    for module in CONTROL_FLOW_ONLY:
        _instrument_control_flow(sys.modules[module])

    logging.disable(logging.CRITICAL)  # the verifier's TOFU warning would be printed on every run
    t = targets.TARGETS[name]
    ignore = set(filter(None, os.environ.get(SIG_ENV, "").split("\n")))

    def one_input(data: bytes) -> None:
        try:
            t.one_input(data)
        except BaseException as e:
            sig = signature(e)
            if sig in ignore:
                return  # already reported by this campaign: keep looking for others
            sys.stderr.write(f"\n{SIG_MARK}{sig}\n")
            sys.stderr.flush()
            raise

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


# ---------------------------------------------------------------------------------- the parent


@dataclass
class Finding:
    """One crash, timeout or out-of-memory, with the input that caused it."""

    kind: str  # crash | timeout | oom | leak | slow-unit
    signature: str
    artifact: str
    input_hex: str
    traceback: str


@dataclass
class Result:
    """What fuzzing one target did: executions, coverage, corpus growth, findings."""

    target: str
    executions: int = 0
    coverage: int = 0
    features: int = 0
    corpus_units: int = 0
    peak_rss_mb: int = 0
    seconds: float = 0.0
    processes: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # the runner itself failed (atheris missing, child died oddly)


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_STATUS = re.compile(r"^#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_TB = re.compile(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==\d+==|\Z)", re.S)


def _libfuzzer_args(t: Any, args: argparse.Namespace, work: Path, artifacts: Path, budget: float) -> list[str]:
    import targets

    out = [
        str(work),
        str(targets.corpus_dir(t.name)),
        f"-max_len={args.max_len or t.max_len}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-malloc_limit_mb={args.rss_limit_mb}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        f"-seed={args.seed}",
    ]
    d = targets.dict_path(t)
    if d is not None:
        out.append(f"-dict={d}")
    out.append(f"-runs={int(budget)}" if args.runs is not None else f"-max_total_time={max(1, round(budget))}")
    return out


def fuzz_target(name: str, args: argparse.Namespace, artifacts_root: Path) -> Result:
    """Fuzz ``name`` in child processes until its budget is spent (or its first finding, unless keep-going)."""
    import targets

    t = targets.TARGETS[name]
    res = Result(name)
    artifacts = artifacts_root / name
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(args.corpus_out) / name if args.corpus_out else Path(tempfile.mkdtemp(prefix=f"ec-fuzz-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    ignored: list[str] = []
    started = time.monotonic()
    try:
        while True:
            budget: float
            if args.runs is not None:
                budget = args.runs - res.executions
            else:
                budget = args.seconds - (time.monotonic() - started)
            if budget < 1 or res.processes > MAX_RESTARTS:
                break
            before = set(artifacts.iterdir())
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                name,
                "--",
                *_libfuzzer_args(t, args, work, artifacts, budget),
            ]
            env = {**os.environ, SIG_ENV: "\n".join(ignored)}
            proc = subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
            res.processes += 1
            log = proc.stdout
            if args.verbose:
                sys.stderr.write(log)
            stats = {k: int(v) for k, v in _STAT.findall(log)}
            res.executions += stats.get("number_of_executed_units", 0)
            res.peak_rss_mb = max(res.peak_rss_mb, stats.get("peak_rss_mb", 0))
            status = _STATUS.findall(log)
            if status:
                cov, ft, corp = (int(x) for x in status[-1])
                res.coverage, res.features, res.corpus_units = max(res.coverage, cov), max(res.features, ft), corp
            new = sorted(set(artifacts.iterdir()) - before)
            written = [Path(p) for p in _ARTIFACT.findall(log)]
            found = [p for p in dict.fromkeys([*written, *new]) if p.exists()]
            if not found:
                if "number_of_executed_units" not in stats:
                    res.error = f"child exited {proc.returncode} without libFuzzer stats:\n{log[-3000:]}"
                break  # budget spent, nothing found
            sigs = [line[len(SIG_MARK) :].strip() for line in log.splitlines() if line.startswith(SIG_MARK)]
            tb = _TB.search(log)
            kinds = set()
            for p in found:
                kind = p.name.split("-", 1)[0]
                kinds.add(kind)
                sig = sigs[-1] if kind == "crash" and sigs else f"{kind}:{p.name}"
                res.findings.append(
                    Finding(kind, sig, str(p), p.read_bytes().hex(), tb.group(1).strip() if tb else log[-2000:])
                )
            if not args.keep_going or not sigs or kinds != {"crash"}:
                break  # a timeout or OOM cannot be told apart from its repeats: stop here
            ignored.append(sigs[-1])
    finally:
        res.seconds = round(time.monotonic() - started, 1)
        if not args.corpus_out:
            shutil.rmtree(work, ignore_errors=True)
    return res


def replay(t: Any, files: list[Path]) -> int:
    """Run target ``t`` on each file, uninstrumented: ok, a documented rejection, or the traceback of a finding."""
    found = 0
    for f in files:
        try:
            t.run(f.read_bytes())
            print(f"{f}: ok")
        except t.expected as e:
            print(f"{f}: rejected ({type(e).__name__}: {e})")
        except BaseException:
            found += 1
            print(f"{f}: FINDING\n{traceback.format_exc()}")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    """Parse flags, fuzz the chosen targets (``--jobs`` at a time) and print one report line per target."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    sys.path.insert(0, str(HERE))
    import targets

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("targets", nargs="+", help=f"'all' or some of: {', '.join(targets.TARGETS)}")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, help="executions per target (default: --seconds 60)")
    budget.add_argument("--seconds", type=float, help="wall time per target")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="targets fuzzed at once (default: CPUs)")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer -seed (0: random; fix it for reproducible runs)")
    p.add_argument("--max-len", type=int, default=0, help="override each target's -max_len")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take (libFuzzer -timeout)")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="memory limit of a target process")
    p.add_argument("--keep-going", action="store_true", help="restart after a crash, ignoring its signature")
    p.add_argument("--artifacts", help="where findings are kept (default: a new temporary directory)")
    p.add_argument("--corpus-out", help="keep each target's grown corpus in DIR/<target> (default: discarded)")
    p.add_argument("--json", action="store_true", help="one JSON object per target instead of text")
    p.add_argument("-v", "--verbose", action="store_true", help="echo libFuzzer's output")
    p.add_argument("--replay", nargs="+", metavar="FILE", help="run one target on these inputs (no fuzzing)")
    args = p.parse_args(argv)
    if args.runs is None and args.seconds is None:
        args.seconds = 60.0
    names = list(targets.TARGETS) if args.targets == ["all"] else args.targets
    unknown = [n for n in names if n not in targets.TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(targets.TARGETS)}")
    if args.replay:
        if len(names) != 1:
            p.error("--replay takes exactly one target")
        return replay(targets.TARGETS[names[0]], [Path(f) for f in args.replay])
    try:
        import atheris  # noqa: F401
    except ImportError:
        p.error("atheris is not installed: pip install -e '.[test]'")
    artifacts = Path(args.artifacts or tempfile.mkdtemp(prefix="ec-fuzz-artifacts-"))
    total_execs = total_findings = 0
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(lambda n: fuzz_target(n, args, artifacts), names):
            total_execs += r.executions
            total_findings += len(r.findings)
            failed |= r.error is not None
            if args.json:
                print(json.dumps(asdict(r)), flush=True)
                continue
            print(
                f"{r.target:20} {r.executions:>10} execs  {len(r.findings)} crashes  cov {r.coverage:>5}"
                f"  ft {r.features:>5}  corpus {r.corpus_units:>4}  rss {r.peak_rss_mb:>4} MB  {r.seconds:>6.1f} s"
                + (f"  ({r.processes - 1} restarts)" if r.processes > 1 else ""),
                flush=True,
            )
            for f in r.findings:
                print(
                    f"    {f.kind}: {f.signature}  {f.artifact}\n"
                    + "\n".join("      " + ln for ln in f.traceback.splitlines()[-8:])
                )
            if r.error:
                print(f"    runner error: {r.error}")
    if not args.json:
        print(f"{'total':20} {total_execs:>10} execs  {total_findings} crashes  (artifacts: {artifacts})")
    return 1 if total_findings or failed else 0


if __name__ == "__main__":
    sys.exit(main())
