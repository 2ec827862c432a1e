"""Entry point: ``python -m benchmarks --help``."""

import sys

if sys.argv[1:2] == ["scale"]:  # the scale benchmark: in-process store calls, no wrk
    from benchmarks.scale import main as scale

    raise SystemExit(scale(sys.argv[2:]))

from benchmarks.cli import main

raise SystemExit(main())
