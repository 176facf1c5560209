"""MkDocs hooks: pages the site writes from the repository at every build, so they cannot fall behind it: the recipe
reference from hfssl's schema, and the benchmarks' own manual from bench/README.md."""

import sys
from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    root = Path(config.config_file_path).resolve().parent
    # The checkout being documented, as mkdocstrings reads it (`paths: [.]`), whatever hfssl is installed.
    sys.path.insert(0, str(root))
    from hfssl.reference import markdown

    files.append(File.generated(config, "reference.md", content=markdown()))
    files.append(File.generated(config, "bench.md", content=(root / "bench" / "README.md").read_text()))
    return files
