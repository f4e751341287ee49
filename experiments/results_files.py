"""Where an experiment's numbers land: for each result, one JSON file (every number, for scripts and
the README's provenance) and one markdown table (for people) side by side under --out."""
import json
import os
from typing import Any


def write_pair(out: str, stem: str, data: Any, markdown: str, **json_options) -> str:
    """Writes {out}/{stem}.json (`data`, indented; `json_options` go to json.dump) and
    {out}/{stem}.md (`markdown`), creating `out` if needed; returns {out}/{stem}."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, stem)
    with open(path + ".json", "w") as f:
        json.dump(data, f, indent=2, **json_options)
    with open(path + ".md", "w") as f:
        f.write(markdown)
    return path
