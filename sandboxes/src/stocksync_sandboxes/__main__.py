"""`python -m stocksync_sandboxes <channel> [options]`: start the sandbox of one channel.

Each channel's module has a `main(argv)`; a new sandbox is one more line in SANDBOXES.
"""

import importlib
import sys
from collections.abc import Sequence

SANDBOXES = {
    "shopify": "stocksync_sandboxes.shopify",
    "woocommerce": "stocksync_sandboxes.woocommerce",
    "amazon": "stocksync_sandboxes.amazon",
    "ebay": "stocksync_sandboxes.ebay",
    "mirakl": "stocksync_sandboxes.mirakl",
    "walmart": "stocksync_sandboxes.walmart",
    "generic": "stocksync_sandboxes.generic",
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SANDBOXES:
        names = ", ".join(sorted(SANDBOXES))
        sys.exit(f"usage: python -m stocksync_sandboxes {{{names}}} [options]  (--help after a name)")
    module = importlib.import_module(SANDBOXES[args[0]])
    module.main(args[1:])


if __name__ == "__main__":
    main()
