"""The rules (``.lopt`` header names) lopt.torch runs, importable without torch (``lopt list``
marks them)."""
RULE_NAMES = ("celo2", "celo2_base", "adafac_mlp", "celo_reference", "celo", "velo")
