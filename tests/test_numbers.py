"""benchmarks/raw_numbers.py: every marked number of README.md and benchmarks/RESULTS.md is what the raw files under
benchmarks/results/ give, and a number edited by hand is caught. Reads files only (under a second)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("benchmark_numbers", ROOT / "benchmarks" / "raw_numbers.py")
numbers = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(numbers)


def test_every_marker_equals_the_raw_files():
    nums = numbers.numbers()
    for doc in numbers.DOCS:
        text = doc.read_text()
        assert numbers.MARKER.search(text), f"{doc.name} has no marker"
        problems = numbers.check(text, nums, doc.name)
        assert not problems, "\n".join(problems) + "\n(python benchmarks/raw_numbers.py --write fills the markers)"


def test_a_number_edited_by_hand_fails_the_check(tmp_path):
    nums = numbers.numbers()
    copy = tmp_path / "RESULTS.md"
    good = "<!--n:run5.code-bytes/deep-n4.b1-->1.57<!--/n-->"
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert good in text
    copy.write_text(text.replace(good, good.replace("1.57", "1.65"), 1))
    problems = numbers.check(copy.read_text(), nums, copy.name)
    assert len(problems) == 1 and "run5.code-bytes/deep-n4.b1 is '1.65'" in problems[0]
    assert "'1.57'" in problems[0]
    filled = numbers.fill(copy.read_text(), nums)
    assert filled == text and not numbers.check(filled, nums)


def test_unknown_keys_and_markers_that_start_a_line_are_named():
    nums = {"a.b": "1.00"}
    problems = numbers.check("x <!--n:a.c-->1<!--/n-->\n<!--n:a.b-->1.00<!--/n--> y\n", nums)
    assert "unknown key a.c" in problems[0]
    assert "a.b starts a line" in problems[1] and len(problems) == 2
    assert not numbers.check("<!--n:t.t-->\n| a |\n<!--/n-->\n", {"t.t": "\n| a |\n"})


def test_command_line_check_passes():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "raw_numbers.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("markers match")
