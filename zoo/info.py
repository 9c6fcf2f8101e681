"""``python -m zoo.info NAME_OR_FILE``: print what a checkpoint says about itself (JSON, no tensors).

NAME is a shipped pretrained model (``zoo.pretrained.available()``), FILE any equizoo checkpoint.
The document holds the model's name and constructor arguments, cutoff, elements, E0s, units, dtype,
the software versions and commit that wrote it, and the training config, data and test metrics.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from zoo.checkpoint import CheckpointError, read
from zoo.pretrained import available, resolve


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print(f"shipped models: {', '.join(available()) or 'none'}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        document, tensors = read(resolve(argv[0]))
    except (CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    document["tensors"] = {"count": len(tensors), "values": int(sum(t.numel() for t in tensors.values()))}
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
