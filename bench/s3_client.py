"""The S3 client library, chosen by measurement: obstore (the operator's) against aiobotocore, each installed
alone into a scratch virtual environment of this Python (so neither shares a dependency with the other or
with the project), measured in fresh interpreters:

- import: wall clock of `python -c "<import>"` minus `python -c pass`, median of RUNS runs each;
- client: the same for the import plus one S3 client built (no request is sent);
- RSS: VmRSS growth across the import, and across import and client, median of RUNS;
- installed: bytes of the environment's site-packages, less pip's own.

Run by nothing else (docs/snapshots.md "Object storage: the client library" quotes it):

    .venv/bin/python -m bench.s3_client     # scratch venvs in .devenv/bench-s3-client/, results in
                                            # bench/results/s3-client.json
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.client import write_results

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".devenv" / "bench-s3-client"
RUNS = int(os.environ.get("S3_CLIENT_RUNS", "11"))

LIBRARIES: dict[str, dict[str, str]] = {
    "obstore": {
        "requirement": "obstore>=0.12,<0.13",
        "import": "from obstore.store import S3Store",
        "client": (
            "S3Store('b', endpoint='http://127.0.0.1:9', region='us-east-1', access_key_id='k',"
            " secret_access_key='s', client_options={'allow_http': True})"
        ),
    },
    "aiobotocore": {
        "requirement": "aiobotocore",
        "import": "from aiobotocore.session import get_session",
        "client": (
            "import asyncio\n"
            "async def c():\n"
            "    async with get_session().create_client('s3', endpoint_url='http://127.0.0.1:9', region_name="
            "'us-east-1', aws_access_key_id='k', aws_secret_access_key='s'):\n"
            "        pass\n"
            "asyncio.run(c())"
        ),
    },
}

# VmRSS before and after the code, in KiB, printed by the fresh interpreter itself.
RSS_PROBE = """
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
before = rss()
exec(compile({code!r}, '<measured>', 'exec'))
print(rss() - before)
"""


def venv(name: str, requirement: str) -> Path:
    """The scratch environment's interpreter, created with `requirement` alone the first time."""
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement], check=True)
    return python


def wall(python: Path, code: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", code], check=True)
    return time.perf_counter() - started


def rss_kib(python: Path, code: str) -> int:
    out = subprocess.run([str(python), "-c", RSS_PROBE.format(code=code)], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def installed_bytes(python: Path) -> int:
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    total = 0
    for entry in site.iterdir():
        if entry.name.startswith(("pip", "setuptools", "_distutils_hack", "distutils-precedence")):
            continue  # the venv's own installer
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total


def measure(name: str, spec: dict[str, str]) -> dict[str, Any]:
    python = venv(name, spec["requirement"])
    version = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with_client = spec["import"] + "\n" + spec["client"]
    wall(python, spec["import"])  # warm the page cache and the .pyc files once
    base, imported, client = [], [], []
    for _ in range(RUNS):  # interleaved, so a burst of load on the machine hits all three alike
        base.append(wall(python, "pass"))
        imported.append(wall(python, spec["import"]))
        client.append(wall(python, with_client))
    return {
        "version": version,
        "import_ms": round((statistics.median(imported) - statistics.median(base)) * 1000, 1),
        "import_and_client_ms": round((statistics.median(client) - statistics.median(base)) * 1000, 1),
        "import_rss_mib": round(statistics.median(rss_kib(python, spec["import"]) for _ in range(RUNS)) / 1024, 1),
        "import_and_client_rss_mib": round(
            statistics.median(rss_kib(python, with_client) for _ in range(RUNS)) / 1024, 1
        ),
        "installed_mib": round(installed_bytes(python) / 2**20, 1),
        "interpreter_start_ms": round(statistics.median(base) * 1000, 1),
    }


def main() -> dict[str, Any]:
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "runs": RUNS,
        "method": "fresh interpreters from scratch venvs; medians; import time net of `python -c pass`",
    }
    for name, spec in LIBRARIES.items():
        results[name] = measure(name, spec)
        print(f"{name}: {results[name]}", flush=True)
    o, a = results["obstore"], results["aiobotocore"]
    results["ratios_aiobotocore_over_obstore"] = {
        key: round(a[key] / o[key], 1) for key in o if key != "version" and o[key] and key != "interpreter_start_ms"
    }
    out = write_results("s3-client", "dev", results)
    print(f"aiobotocore / obstore: {results['ratios_aiobotocore_over_obstore']}\nwritten to {out}")
    return results


if __name__ == "__main__":
    main()
