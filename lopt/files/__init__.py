"""Files (DESIGN.md: Files): file errors, the one atomic write and strict-JSON writer, the
``.lopt`` rule file, training checkpoints, run folders and result provenance."""
from lopt.files.atomic import strict, write_atomically, write_json, write_text
from lopt.files.errors import FileFormatError
from lopt.files.rule_file import load, load_metadata, save

__all__ = ["FileFormatError", "write_atomically", "write_json", "write_text", "strict", "save",
           "load", "load_metadata"]
