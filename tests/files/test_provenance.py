"""The provenance line of a results.md says what was reused, from which commit and under which
compiler flags."""
from lopt.files.provenance import markdown_line


def _record(**extra):
    return {"command": "lopt bench x", "wall_s": 12.0, "machine": "2 CPU cores", "commit": "a" * 40,
            "dirty": False, "lopt_version": "0.2.0", "date": "2026-12-01 10:00 UTC",
            "xla_flags": "", **extra}


def test_a_resumed_run_names_the_earlier_commits_and_their_compiler_flags():
    stages = {"one": {"cached": True, "commit": "b" * 40}, "two": {"cached": False,
                                                                   "commit": "a" * 40}}
    earlier = [{"commit": "c" * 40, "wall_s": 100.0, "xla_flags": "--xla_opt=0"}]
    line = markdown_line(_record(stages=stages, earlier_invocations=earlier))
    assert line.startswith("Made by `lopt bench x` in 12 s") and "commit aaaaaaaaaa" in line
    assert "It resumed 1 of 2 stages" in line and "bbbbbbbbbb" in line and "cccccccccc" in line
    assert "made with XLA_FLAGS='--xla_opt=0'" in line and "112 s in all" in line
    assert "XLA_FLAGS" not in markdown_line(_record())
