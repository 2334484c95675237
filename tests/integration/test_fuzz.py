# SPDX-License-Identifier: MIT
"""A short run of the libFuzzer harnesses (tests/fuzz/run): the option
parser, the size parser, the names module and the store's state machine with
its .stats JSON.  Each harness runs a few seconds (CAPSHM_FUZZ_SECONDS, or a
quarter of CAPSHM_SOAK_MINUTES when that is set); a crash, a failed property
check, a sanitizer report or a leak fails the test and leaves the input in
build-fuzz/artifacts/.  The long run is `tests/fuzz/run --long`.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "fuzz", "run")
HARNESSES = ["options", "names", "size", "stats"]


def seconds():
    if os.environ.get("CAPSHM_FUZZ_SECONDS"):
        return int(os.environ["CAPSHM_FUZZ_SECONDS"])
    soak = float(os.environ.get("CAPSHM_SOAK_MINUTES", "0") or 0)
    return max(3, int(soak * 60 / len(HARNESSES))) if soak > 0 else 3


def libfuzzer_available():
    cc = next((c for c in ("clang", "clang-14") if shutil.which(c)), None)
    if not cc:
        return False
    r = subprocess.run([cc, "-print-file-name=libclang_rt.fuzzer-x86_64.a"],
                       capture_output=True, text=True)
    return r.returncode == 0 and os.path.isabs(r.stdout.strip()) and os.path.exists(r.stdout.strip())


@pytest.mark.once
@pytest.mark.skipif(not libfuzzer_available(),
                    reason="clang with libFuzzer is not installed (libclang-rt-14-dev)")
def test_fuzz_harnesses_find_nothing():
    secs = seconds()
    r = subprocess.run([RUN, str(secs)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120 + secs * len(HARNESSES) * 2)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"fuzz: (\d+) harnesses, (\d+) executions, (\d+) failed", last)
    assert m, out
    assert int(m.group(1)) == len(HARNESSES) and int(m.group(3)) == 0, out
    # Every harness really ran (the cheapest does millions, the store
    # harness thousands, per second).
    for h in HARNESSES:
        hm = re.search(r"fuzz_%s: (\d+) executions" % h, out)
        assert hm and int(hm.group(1)) >= 100, (h, out)
