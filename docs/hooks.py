"""MkDocs hooks: the recipe reference page, written from hfssl's schema at every build so it cannot fall behind."""

import sys
from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    # The checkout being documented, as mkdocstrings reads it (`paths: [.]`), whatever hfssl is installed.
    sys.path.insert(0, str(Path(config.config_file_path).resolve().parent))
    from hfssl.reference import markdown

    files.append(File.generated(config, "reference.md", content=markdown()))
    return files
