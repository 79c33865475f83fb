"""What a rule computes, as a version a ``.lopt`` file records: a code change that moves a
rule's updates for the same theta and config bumps its version here, with the config that
still computes each earlier version (or none, and such files are refused in one line).

History (version: what it is):
- adafac_mlp, celo 1: lopt's own Adafactor-feature epsilons and decay clamps (before
  2026-12-01; what ``celo_tiny`` and ``adafac_tiny`` were meta-trained under).
- adafac_mlp, celo 2: learned_optimization's epsilons and clamps; version 1 is the config
  ``feature_semantics: "lopt_v1"``.
Every other rule is at version 1, its arithmetic as of file format 3.
"""
from __future__ import annotations

# rule name -> (current version, {earlier version: config that computes it, or None}).
SEMANTICS = {
    "adafac_mlp": (2, {1: {"feature_semantics": "lopt_v1"}}),
    "celo": (2, {1: {"feature_semantics": "lopt_v1"}}),
}


# Files written before the record (format 3 and earlier) are read as these versions: what
# lopt computed for them when the record was introduced (2026-12-05), so no file changes.
UNRECORDED = {"adafac_mlp": 2, "celo": 2}


def unrecorded_version(rule_name: str) -> int:
    return UNRECORDED.get(rule_name, 1)


def current_version(rule_name: str) -> int:
    """The semantics version this lopt computes for ``rule_name``."""
    return SEMANTICS.get(rule_name, (1, {}))[0]


def config_for_version(rule_name: str, config: dict, version: int) -> dict:
    """The config under which this lopt computes what a file of semantics ``version`` with
    ``config`` computed when it was made; ValueError (one line) when it cannot."""
    now, earlier = SEMANTICS.get(rule_name, (1, {}))
    if version == now:
        return config
    if version > now:
        raise ValueError(f"was made under rule {rule_name}'s semantics version {version}; this "
                         f"lopt computes up to version {now}: upgrade lopt")
    legacy = earlier.get(version)
    if legacy is None:
        raise ValueError(f"was made under rule {rule_name}'s semantics version {version}, which "
                         f"this lopt (version {now}) cannot compute; use the lopt that made it "
                         "or meta-train it again")
    clash = {k: v for k, v in legacy.items() if k in config and config[k] != v}
    if clash:
        raise ValueError(f"records rule {rule_name}'s semantics version {version} with config "
                         f"{clash}, which that version did not have")
    return {**config, **legacy}
