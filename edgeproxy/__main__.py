"""``edgeproxy`` entry point. The proxy itself is issue 4; until then the command says so."""

from __future__ import annotations

import sys


def main() -> None:
    sys.stderr.write("edgeproxy: the caching proxy is not built yet (see issue 4)\n")
    sys.exit(2)


if __name__ == "__main__":
    main()
