"""Print one value of a recipe's egs/NAME/conf/recipe.yaml for run.sh (lists come out space-separated).

    python -m k2d.recipe_config egs/mini_cs/conf/recipe.yaml test_sets      # -> test_in test_ood
"""

from __future__ import annotations

import argparse
import sys

from k2d.config import ConfigError, load_yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="recipe.yaml")
    parser.add_argument("key", help="key to print")
    parser.add_argument("--default", help="printed when the key is absent (else it is an error)")
    args = parser.parse_args(argv)
    try:
        values = load_yaml(args.file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.key not in values:
        if args.default is not None:
            print(args.default)
            return 0
        print(f"error: {args.file} has no key '{args.key}'", file=sys.stderr)
        return 1
    value = values[args.key]
    print(" ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
