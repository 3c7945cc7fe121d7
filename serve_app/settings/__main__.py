"""`python -m serve_app.settings` prints the settings reference; `--write docs/settings.md` updates that file."""

import sys
from pathlib import Path

from serve_app.settings.reference import markdown_table, write

if sys.argv[1:2] == ["--write"]:
    write(Path(sys.argv[2]))
else:
    print(markdown_table())
