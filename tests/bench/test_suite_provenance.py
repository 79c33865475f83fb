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
