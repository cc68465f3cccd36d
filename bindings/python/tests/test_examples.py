"""(a) mp_throttle 0.0.5's own tutorial and README example, example.py and
example_asyncio.py, run as scripts with multiprocessing.Pool workers (the default start method,
'fork' on Linux with Python 3.11: the scripts have no `if __name__ ==
"__main__"` guard, so they cannot run under 'spawn', with 0.0.5 either).

tests/tutorial.py and tests/readme_example.py are the code of
data/mp_throttle-tutorial.txt (the seed) and of the README of 0.0.5
(data/mp_throttle-0.0.5-README.md, from the wheel's METADATA); the tests
below extract that code again and allow one difference only: the line that
imports mp_throttle. (The binding's package is named mp_throttle, so today
there is no difference at all. The README's code block is indented by four
spaces inside its fence; it is dedented, as Python needs.)

The four scripts start together (module fixture) to keep the suite short:
the tutorial takes 10.3 s (two runs of 5 s), the README example 5.2 s,
example.py 2.2 s, example_asyncio.py 2.6 s.
"""

import difflib
import math
import os
import re
import textwrap

import pytest

from helpers import BINDING, DATA, HERE, finish, grant_bounds, shm_names_of, start_script

TUTORIAL = os.path.join(HERE, "tutorial.py")
README_EXAMPLE = os.path.join(HERE, "readme_example.py")
EXAMPLE = os.path.join(BINDING, "example.py")
EXAMPLE_ASYNCIO = os.path.join(BINDING, "example_asyncio.py")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- the copies


def looks_like_code(line):
    return bool(
        re.match(r"(import |def |for |print\(| {4}|\w[\w.]*\(.*\)$|[\w ,]+ = )", line)
    )


def tutorial_code():
    """The code of the tutorial text: the runs of code lines between two
    lines of prose (blank lines inside a run kept), one blank line between
    runs. Output lines (">>> ...") are prose here."""
    blocks, block = [], []
    for line in read(os.path.join(DATA, "mp_throttle-tutorial.txt")).split("\n") + ["(end)"]:
        if line == "" or (looks_like_code(line) and not line.startswith(">>>")):
            block.append(line)
            continue
        code = "\n".join(block).strip("\n")
        if code:
            blocks.append(code)
        block = []
    return "\n\n".join(blocks) + "\n"


def readme_code():
    m = re.search(r"```python\n(.*?)```", read(os.path.join(DATA, "mp_throttle-0.0.5-README.md")), re.S)
    assert m, "the README has no python code block"
    return textwrap.dedent(m.group(1))


def only_import_changed(original, copy):
    """The lines where `copy` differs from `original`; each must be the
    import of mp_throttle."""
    diff = [
        line
        for line in difflib.unified_diff(original.splitlines(), copy.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    removed = [line[1:] for line in diff if line.startswith("-")]
    added = [line[1:] for line in diff if line.startswith("+")]
    assert removed in ([], ["import mp_throttle"]), diff
    assert len(added) == len(removed), diff
    for line in added:
        assert re.fullmatch(r"(import \w+(\.\w+)* as mp_throttle|from \w+ import mp_throttle)", line), diff
    return diff


def test_tutorial_copy_is_the_tutorial_code():
    code = tutorial_code()
    # The extraction finds every code block of the tutorial.
    assert code.count("throttle.start()") == 2 and "workerpool = " in code
    assert "print(throttle.latest())" in code and code.endswith("throttle.stop()\n")
    only_import_changed(code, read(TUTORIAL))


def test_readme_copy_is_the_readme_code():
    code = readme_code()
    assert "workerpool = multiprocessing.Pool" in code
    only_import_changed(code, read(README_EXAMPLE))


def test_only_import_line_check_catches_changes():
    code = readme_code()
    with pytest.raises(AssertionError):
        only_import_changed(code, code.replace("time.sleep(5)", "time.sleep(1)"))
    only_import_changed(code, code.replace("import mp_throttle", "import mpt as mp_throttle"))


# ---------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def runs():
    """Starts the four scripts at once; each test waits for its own."""
    procs = {
        "tutorial": start_script(TUTORIAL),
        "readme": start_script(README_EXAMPLE),
        "example": start_script(EXAMPLE),
        "asyncio": start_script(EXAMPLE_ASYNCIO),
    }
    results = {}

    def result(which, timeout):
        if which not in results:
            proc = procs[which]
            code, out, err = finish(proc, timeout)
            assert code == 0, f"{which} exited with {code}\nstdout:\n{out}\nstderr:\n{err}"
            assert err == "", err
            # The creator unlinked its named throttle at exit.
            assert shm_names_of(proc.pid) == []
            results[which] = out
        return results[which]

    yield result
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def check_run_figures(lines, between_label):
    """The four lines of stop(): 4 per 1 s for 5 s grants units at 0, 0.25,
    ..., 5.0 s: 20 or 21 (the last falls at the instant stop() is called;
    more only if sleep(5) overran by 0.25 s). mp_throttle 0.0.5 printed 25."""
    m = re.fullmatch(
        r"Runtime: (\S+)\nTotal: (\d+)\n" + between_label + r": (\S+)\nProcesses per second: (\S+)",
        "\n".join(lines),
    )
    assert m, lines
    runtime, total, between, per_second = float(m[1]), int(m[2]), float(m[3]), float(m[4])
    assert 5.0 <= runtime < 6.5, runtime  # sleep(5) between start and stop
    low, high = grant_bounds(4, runtime)
    assert low <= total <= high, (total, runtime)
    assert math.isclose(between, runtime / total, rel_tol=1e-3), (between, runtime, total)
    assert math.isclose(per_second, total / runtime, rel_tol=1e-3), (per_second, runtime, total)
    return runtime, total


def parse_pair(line):
    m = re.fullmatch(r"\((\S+), (\S+)\)", line)
    assert m, line
    return float(m[1]), float(m[2])


def test_tutorial_runs_unchanged(runs):
    lines = runs("tutorial", 90).splitlines()
    assert len(lines) == 4 + 20, lines
    runtime, total = check_run_figures(lines[:4], "Time between processes")
    # Then 10 x (latest(), mean()) during a second run of 5 s. Whether the
    # workers still take fuel then depends on a race that is the tutorial's
    # own: stop() wakes them with the kill flag set, and the script calls
    # start() (clearing it) a few microseconds later, so a worker that looks
    # at the flag after that keeps going. Either way:
    for i in range(10):
        seconds_between, per_second = parse_pair(lines[4 + 2 * i])
        # latest(): the last second holds at most the tank (4) plus the
        # units of one second (4 or 5).
        assert 0 <= per_second <= 9, lines[4 + 2 * i]
        mean_between, mean_per_second = parse_pair(lines[5 + 2 * i])
        # mean(): total / runtime over both runs; each run grants at most
        # 1 + 4 * its runtime, so at most 4 + 2 / 5.0 = 4.4; at least the
        # first run's total over 10.5 s (if no worker kept going).
        assert 1.8 <= mean_per_second <= 4.4, lines[5 + 2 * i]
        assert math.isclose(mean_between, 1 / mean_per_second, rel_tol=1e-6)
        if per_second:
            assert math.isclose(seconds_between, 1 / per_second, rel_tol=1e-6)
        else:
            assert seconds_between == 0


def test_readme_example_runs_unchanged(runs):
    lines = runs("readme", 60).splitlines()
    check_run_figures(lines, "Mean frequency")


def test_example_py(runs):
    out = runs("example", 60)
    # 4 per 1 s for 2 s: units at 0, 0.25, ..., 2.0 s.
    m = re.fullmatch(r"(\d+) units of fuel in (\S+) s\n", out)
    assert m, out
    runtime = float(m[2])  # printed to 0.01 s
    low, _ = grant_bounds(4, runtime - 0.005)
    _, high = grant_bounds(4, runtime + 0.005)
    assert 2.0 <= runtime < 3.0 and low <= int(m[1]) <= high, out


ASYNCIO_OUTPUT = re.compile(r"21 jobs done\nFalse\n21 units of fuel in (\S+) s\n")


def test_example_asyncio_py(runs):
    """10 per second: 21 jobs take a unit each through `async with` (at 0,
    0.1, ..., 2.0 s); then acquire(n=10, timeout=0.5) gives up (10 units
    would take 1 s), having taken nothing: 21 units, about 2.5 s. (test.sh
    checks the same output from an installed package.)"""
    out = runs("asyncio", 60)
    m = ASYNCIO_OUTPUT.fullmatch(out)
    assert m, out
    assert 2.4 <= float(m[1]) < 4.0, out
