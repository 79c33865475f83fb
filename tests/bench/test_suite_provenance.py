"""A resumed suite names the earlier invocations whose stages it reused, and only those."""
import dataclasses
import json

from lopt.bench.suite import Suite


@dataclasses.dataclass(frozen=True)
class Size:
    n: int = 1


def test_only_invocations_whose_stages_are_reused_are_named(tmp_path):
    out = str(tmp_path)
    first = Suite("s", out, Size(), "first", 1, progress=False)
    assert first.cached("a", lambda: 1.5) == 1.5
    first.finish("T", "intro")
    record = json.load(open(tmp_path / "results.json"))["provenance"]
    # An older run's record, whose stages were recomputed since, sits in its history.
    record["earlier_invocations"] = [{"commit": "0" * 40, "wall_s": 999.0, "xla_flags": "-O0"}]
    json.dump({"provenance": record}, open(tmp_path / "results.json", "w"))
    second = Suite("s", out, Size(), "second", 1, progress=False)
    assert second.cached("a", lambda: 2.0) == 1.5  # read back, not recomputed
    md = second.finish("T", "intro")
    earlier = json.load(open(tmp_path / "results.json"))["provenance"]["earlier_invocations"]
    assert [r["command"] for r in earlier] == ["first"]
    assert "It resumed 1 of 1 stages" in md and "-O0" not in md and "0000000000" not in md


def test_an_interim_report_computes_nothing_and_writes_only_beside_the_cache(tmp_path):
    out = str(tmp_path)
    run = Suite("s", out, Size(), "run", 2, progress=False)
    assert run.cached("a", lambda: 1.5) == 1.5
    run.finish("T", "intro")
    before = (tmp_path / "results.md").read_text()

    def must_not_run():
        raise AssertionError("an interim report computed a stage")

    interim = Suite("s", out, Size(), "interim", 2, progress=False, interim=True)
    assert interim.cached("a", must_not_run) == 1.5
    assert interim.cached("b", must_not_run) is None
    assert interim.cached("a", must_not_run, {"other": "settings"}) is None  # not the same stage
    assert interim.missing == ["b", "a"]
    interim.finish("T", "intro")
    assert (tmp_path / "results.md").read_text() == before
    record = json.load(open(tmp_path / "interim" / "results.json"))["provenance"]
    assert record["interim"] == {"stages_cached": 1, "stages_missing": 2}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a.json"]


def test_a_stage_computed_with_other_settings_is_kept_aside_not_overwritten(tmp_path):
    out = str(tmp_path)
    calls = []

    def compute(v):
        calls.append(v)
        return v

    suite = Suite("s", out, Size(), "run", 3, progress=False)
    assert suite.cached("a", lambda: compute(1.0), {"lr": 1}) == 1.0
    assert suite.cached("a", lambda: compute(2.0), {"lr": 2}) == 2.0  # settings changed
    again = Suite("s", out, Size(), "run", 3, progress=False)
    assert again.cached("a", lambda: compute(9.0), {"lr": 1}) == 1.0  # read back, kept aside
    assert again.cached("a", lambda: compute(9.0), {"lr": 2}) == 2.0
    assert calls == [1.0, 2.0]
    assert len(list((tmp_path / "cache" / "superseded").iterdir())) == 1
    interim = Suite("s", out, Size(), "interim", 3, progress=False, interim=True)
    assert interim.cached("a", lambda: compute(9.0), {"lr": 1}) == 1.0
