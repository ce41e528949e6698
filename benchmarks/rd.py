#!/usr/bin/env python
"""Rate-distortion benchmark of GeoRSIC against classical codecs.

Same as ``georsic bench rd``; see ``georsic.bench.rd`` for the protocol. From the repository
root::

    python benchmarks/rd.py                 # the held-out images in benchmarks/data
    python benchmarks/rd.py --quick         # one image, fewer points (about a minute)
    python benchmarks/rd.py --images a.tif b.tif --qualities 0..7 --out /tmp/rd

Writes ``rd.md``, ``rd.png`` and ``rd.json`` to ``benchmarks/results`` (or ``--out``).
"""

import sys

from georsic.bench.rd import main

if __name__ == "__main__":
    sys.exit(main())
