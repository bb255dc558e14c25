"""The bundled toy bases, by the name a config gives them (``name_or_path: builtin:toy``).

Each name is its world's default recipe; the build ships inside the package, and
``python -m infuser.toy.builtin NAME [DIR]`` rebuilds it from its seeded recipe (into the
package's bundle folder unless ``DIR`` is given).
"""

from __future__ import annotations

from pathlib import Path

from infuser.config import TOY_MODEL_ID
from infuser.toy.base_model import ToyBaseConfig, ToyRecipe, ensure_toy_base
from infuser.toy.rules import RuleBaseConfig

BUILTIN_RECIPES: dict[str, type[ToyRecipe]] = {TOY_MODEL_ID: ToyBaseConfig, "builtin:toy-rules": RuleBaseConfig}


def builtin_path(name: str) -> Path | None:
    """The directory of the bundled base called ``name`` (built and cached if it must be), or
    ``None`` when ``name`` is no builtin name."""
    recipe = BUILTIN_RECIPES.get(name)
    return None if recipe is None else ensure_toy_base(recipe())


if __name__ == "__main__":
    import logging
    import shutil
    import sys

    from infuser.toy.base_model import build_toy_base, bundled_dir

    if len(sys.argv) not in (2, 3) or f"builtin:{sys.argv[1]}" not in BUILTIN_RECIPES:
        names = ", ".join(name.removeprefix("builtin:") for name in BUILTIN_RECIPES)
        sys.exit(f"usage: python -m infuser.toy.builtin NAME [DIR]   (NAME: one of {names})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = BUILTIN_RECIPES[f"builtin:{sys.argv[1]}"]()
    output = Path(sys.argv[2]) if len(sys.argv) == 3 else bundled_dir(recipe)
    if output.exists():
        shutil.rmtree(output)
    build_toy_base(recipe, output)
