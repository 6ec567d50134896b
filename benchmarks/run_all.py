"""Run every benchmark in sequence and print what each measures (`make bench`).

Benchmarks print numbers; they are never timed unit tests. Record results with the machine in
benchmarks/RESULTS.md.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_dataset.py", "bench_segment.py", "bench_translator.py", "bench_dpc.py"]

if __name__ == "__main__":
    failed = 0
    for script in SCRIPTS:
        print(f"\n=== {script}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script)]) != 0
    sys.exit(1 if failed else 0)
