"""Every measured number of README.md and benchmarks/RESULTS.md, printed from the raw files under benchmarks/results/.

A measured number in either file is written inside a marker, an HTML comment that Markdown does not render:

    native deep n = 4 **<!--n:run5.code-bytes/deep-n4.b1-->1.57<!--/n-->×** at batch 1

The key (here `run5.code-bytes/deep-n4.b1`) names one entry of numbers(); the text between the two comments
must be exactly that entry's value. A whole table can sit inside one marker (the comments on lines of their own,
the value then starts and ends with a newline).

    python benchmarks/raw_numbers.py            prints key = value for every key
    python benchmarks/raw_numbers.py --write    fills every marker of README.md and RESULTS.md from the raw files
    python benchmarks/raw_numbers.py --check    exits 1 naming each marker whose text differs from its value, each
                                            marker whose key is unknown, and each inline marker that starts a
                                            line (Markdown would read it as an HTML block and split the paragraph)

tests/test_numbers.py runs --check.

Keys. One small function per raw folder (FOLDERS in benchmarks/raw_folders.py) returns {key: text}; the key starts with the
folder's short name (run4, smollm2, head_types, ...). Most keys come from four shared readers (benchmarks/raw_readers.py):
  decode_keys   decode.json     <model>.b1 (speed-up, 2 decimals) .b1.range ("1.61–1.66": min–max of the rounds)
                                .b1.tps .b1.greedy_tps (tokens/s) .tpf (tokens per forward) .accept (per draft position)
                                .degenerate (continuations) .sampling .sampling.range .sampling.tpf
  vllm_keys     vllm.json       <model>.vllm.<config>.b1 (.range .tps .tpf); configs nospec, heads_k<k>, ngram, draft
  table_keys    the report's speculative table (csv, or md where no csv was kept): the same keys
  study_keys    a default-study folder: all of the above plus val_loss (<model>.bpb .loss), induction
                (<model>.induction .diff .ci), study_time (minutes, rules as a table), code (pass1_max)
where <model> is dataset/size-n<n>, e.g. code-bytes/deep-n4. One format per kind of number: speed-ups, tokens per
forward and acceptance 2 decimals, accuracies, bits/byte and losses 3, minutes 1.

Adding a section for a new run:
  1. commit its raw files under benchmarks/results/<folder>/ (per-item evaluation results included, e.g.
     eval_induction.json, so that intervals can be recomputed);
  2. write one function for the folder in benchmarks/raw_folders.py, e.g.
         def my_run():  # with a docstring naming the folder and what was run
             return study_keys("myrun", RAW / "my-run-2026-12-24")
     or read the files yourself and return {"myrun.what": fmt(x)}, and add it to FOLDERS;
  3. write <!--n:myrun.what--><!--/n--> where the number goes (`python benchmarks/raw_numbers.py | grep myrun` lists
     the keys), run --write, and read the result.
A key defined twice stops the script.

Where the raw output was not kept, the number has no key: RESULTS.md says so next to it ("not regenerated").
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # raw_folders, raw_readers: this script's own modules
from raw_folders import FOLDERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md")
MARKER = re.compile(r"<!--n:(.*?)-->(.*?)<!--/n-->", re.S)


# ---- the markers

def numbers():
    """{key: text} of every folder; a key defined by two folders stops the script."""
    out = {}
    for folder in FOLDERS:
        keys = folder()
        twice = sorted(set(keys) & set(out))
        if twice:
            sys.exit(f"raw_numbers.py: {folder.__name__} defines keys already defined: {', '.join(twice)}")
        out.update(keys)
    return out


def check(text, nums, name="text"):
    """Problems of one document's markers, one line each (empty: every marker equals its value)."""
    problems = []
    for m in MARKER.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        key, value = m.group(1), m.group(2)
        if key not in nums:
            problems.append(f"{name}:{line}: unknown key {key}")
        elif value != nums[key]:
            problems.append(f"{name}:{line}: {key} is {value!r}, the raw files give {nums[key]!r}")
        if not value.startswith("\n") and (m.start() == 0 or text[m.start() - 1] == "\n"):
            problems.append(f"{name}:{line}: inline marker {key} starts a line (Markdown reads it as an HTML block)")
    return problems


def fill(text, nums):
    """text with every known marker's value written in."""
    return MARKER.sub(lambda m: f"<!--n:{m.group(1)}-->{nums.get(m.group(1), m.group(2))}<!--/n-->", text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="fill every marker of README.md and RESULTS.md")
    ap.add_argument("--check", action="store_true", help="exit 1 when a marker differs from the raw files")
    args = ap.parse_args(argv)
    nums = numbers()
    if args.write:
        for doc in DOCS:
            doc.write_text(fill(doc.read_text(), nums))
    if args.check or args.write:
        problems = [p for doc in DOCS for p in check(doc.read_text(), nums, doc.relative_to(ROOT))]
        print("\n".join(problems) or f"{sum(len(MARKER.findall(d.read_text())) for d in DOCS)} markers match")
        return 1 if problems else 0
    for key, value in nums.items():
        print(f"{key} = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
