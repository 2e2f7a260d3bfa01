"""Typed results (mtp.result_types): a stage's dict is checked against its class before it is written, the report
reads files into the classes, older files read with defaults, newer ones are refused by name."""
import copy
from pathlib import Path

import pytest

from mtp import config, report, results
from mtp.io import write_json
from mtp.result_types import SCHEMA_KEY, Decode, SchemaError, Vllm

from test_report import fake_decode, fake_vllm, study_cfg


def _model(tmp_path, dataset="code", n=2):
    cfg = study_cfg(tmp_path)
    m = next(x for x in config.models(cfg) if x.dataset == dataset and x.n_heads == n and x.size == "micro")
    return cfg, {"dataset": m.dataset, "size": m.size, "n": m.n_heads, "dir": m.dir, "name": m.name,
                 **report.shape_of(cfg, m.size)}


def test_the_writers_dicts_pass_their_check_and_are_stamped(tmp_path):
    """decode.json from the real decode bench and vllm.json from the vLLM stage's summarizer (test_report's
    fakes) pass; what is written carries the schema version; read back, every part is typed."""
    _, m = _model(tmp_path)
    for key, data in (("decode", fake_decode(m, 1.5, 1.2)), ("vllm", fake_vllm(m, 0.6))):
        out = results.checked(key, data)
        assert out == {**data, SCHEMA_KEY: results.kinds()[key].type.SCHEMA_VERSION}
    d = Decode.read(results.checked("decode", fake_decode(m, 1.5, 1.2)))
    assert d.per_batch[0].ar.tokens_per_s > 0 and d.quality.degenerate is False
    assert d.per_batch[-1].speedup_spread.spread > 0 and d.tokens_per_forward_by_k[0].k == 1
    v = Vllm.read(fake_vllm(m, 0.6))
    assert v.configs[0].per_batch[0].tokens_per_s > 0 and v.crosscheck.ok is True


def test_a_key_the_class_does_not_name_stops_the_writer_with_its_path(tmp_path):
    _, m = _model(tmp_path)
    d = fake_decode(m, 1.5, 1.2)
    bad = copy.deepcopy(d)
    bad["per_batch"][1]["spec"]["tokens_per_joule"] = 3.0
    with pytest.raises(SchemaError, match=r"Decode\.per_batch\[1\]\.spec: tokens_per_joule not a field of "
                                          r"mtp.result_types.DecodeRun"):
        results.checked("decode", bad)
    bad = copy.deepcopy(d)
    bad["quality"] = [1, 2]
    with pytest.raises(SchemaError, match=r"Decode\.quality: a JSON object expected"):
        results.checked("decode", bad)
    v = fake_vllm(m, 0.6)
    v["configs"][0]["per_prompt"] = [{"num_drafts": 3, "drafts_per_s": 1.0}]
    with pytest.raises(SchemaError, match="drafts_per_s"):
        results.checked("vllm", v)


def test_older_files_read_with_defaults_and_newer_ones_are_refused(tmp_path):
    cfg, m = _model(tmp_path)
    old = fake_decode(m, 1.5, 1.2)
    for key in ("quality", "tokens_per_forward_by_k", "sampling"):
        old.pop(key, None)
    old["per_batch"] = "not a list"
    d = Decode.read(old)
    assert d.quality is None and d.per_batch == [] and d.tokens_per_forward_by_k == [] and d.n == m["n"]
    newer = {**fake_decode(m, 1.5, 1.2), SCHEMA_KEY: 99}
    with pytest.raises(SchemaError, match="schema version 99, newer than this mtp's 2"):
        Decode.read(newer)
    write_json(Path(m["dir"]) / results.file("decode"), newer)
    rec = next(r for r in report.load_study(cfg) if r.name == m["name"])
    assert rec.results["decode"] is None
    assert rec.status["decode"].startswith("unreadable: schema version 99")


def test_the_report_reads_every_result_file_into_its_class(tmp_path):
    """Every result kind (mtp.results, the registered tasks' too) names a class of mtp.result_types; load_study
    gives each file of a whole fake study as an instance of it, never a dict; the train benchmark too."""
    from mtp.result_types import BenchTrain, ResultFile
    from test_report import write_study
    from test_cost_claims import train_bench
    cfg = study_cfg(tmp_path)
    write_study(cfg)
    write_json(tmp_path / "results" / results.BENCH_TRAIN, train_bench(time_ratio=1.1, mem_growth=1.0))
    kinds = results.kinds()
    assert all(isinstance(k.type, type) and issubclass(k.type, ResultFile) for k in kinds.values())
    seen = set()
    for rec in report.load_study(cfg):
        for key, data in rec.results.items():
            if rec.status[key] == "ok":
                assert isinstance(data, kinds[key].type), (rec.name, key, type(data))
                seen.add(key)
    assert seen == set(kinds), seen
    bench, status = report.load_bench(cfg)
    assert status == "ok" and isinstance(bench, BenchTrain) and bench.shapes[0].time_ratio.median == 1.1


def test_schema_1_decode_files_read_their_counters_under_vllms_names(tmp_path):
    """decode.json of schema 1 named the counters row_steps, verified_per_pos, accepted_per_pos; schema 2 writes
    vLLM's names (mtp.decoding.engine.COUNTERS). A schema-1 file reads into the same fields; a writer that still
    uses an old name is stopped."""
    _, m = _model(tmp_path)
    new = fake_decode(m, 1.5, 1.2)
    old = copy.deepcopy(new)
    for row in old["per_batch"]:
        for run in (row["ar"], row["spec"]):
            if run:
                run["row_steps"] = run.pop("num_drafts")
                run["verified_per_pos"] = run.pop("num_draft_tokens_per_pos")
                run["accepted_per_pos"] = run.pop("num_accepted_tokens_per_pos")
    assert Decode.read({**old, SCHEMA_KEY: 1}) == Decode.read({**new, SCHEMA_KEY: 1})
    spec = Decode.read(old).per_batch[-1].spec
    assert spec.num_drafts > 0 and sum(spec.num_accepted_tokens_per_pos) <= sum(spec.num_draft_tokens_per_pos)
    with pytest.raises(SchemaError, match="accepted_per_pos, row_steps, verified_per_pos not a field"):
        results.checked("decode", old)
