"""Run the benchmarks: every `tests/bench/bench_*.py`, each in a fresh interpreter, in name order.

Convention: a bench module defines `main() -> None`, which measures a baseline and the thing itself in the
same run and prints its lines (throughputs and the ratio to the baseline). Benchmarks never assert timings.

    python tests/bench/run.py            # all of them
    python tests/bench/run.py convert    # only those whose name contains "convert"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_CALL_MAIN = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='bench')['main']()"


def main(argv: list[str]) -> int:
    benches = sorted(HERE.glob("bench_*.py"))
    if argv:
        benches = [b for b in benches if any(word in b.stem for word in argv)]
    if not benches:
        print(f"no benchmark matches {argv}", file=sys.stderr)
        return 2
    failed = []
    for bench in benches:
        print(f"== {bench.stem}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CALL_MAIN, str(bench)], check=False)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
        if done.returncode != 0:
            failed.append(bench.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
