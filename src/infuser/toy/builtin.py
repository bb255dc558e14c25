"""The bundled toy bases, as ``builtin:<name>`` models (``name_or_path: builtin:toy``).

Each name is a world's default recipe, registered in the ``infuser.builtin_models`` entry-point
group as a function returning the checkpoint's directory (:func:`infuser.models.resolve_path`
looks names up there, so a plug-in can bundle a base of its own the same way). The builds ship
inside the package; ``python -m infuser.toy.builtin NAME [DIR]`` rebuilds one from its seeded
recipe (into the package's bundle folder unless ``DIR`` is given).
"""

from __future__ import annotations

from pathlib import Path

from infuser.toy.base_model import RuleBaseConfig, ToyBaseConfig, ToyRecipe, ensure_toy_base

BUNDLED_RECIPES: dict[str, type[ToyRecipe]] = {"toy": ToyBaseConfig, "toy-rules": RuleBaseConfig}


def toy_base() -> Path:
    """The aligned toy world's base (``builtin:toy``)."""
    return ensure_toy_base(ToyBaseConfig())


def rules_base() -> Path:
    """The rule world's base (``builtin:toy-rules``)."""
    return ensure_toy_base(RuleBaseConfig())


if __name__ == "__main__":
    import logging
    import shutil
    import sys

    from infuser.toy.base_model import build_toy_base, bundled_dir

    if len(sys.argv) not in (2, 3) or sys.argv[1] not in BUNDLED_RECIPES:
        sys.exit(f"usage: python -m infuser.toy.builtin NAME [DIR]   (NAME: one of {', '.join(BUNDLED_RECIPES)})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = BUNDLED_RECIPES[sys.argv[1]]()
    output = Path(sys.argv[2]) if len(sys.argv) == 3 else bundled_dir(recipe)
    if output.exists():
        shutil.rmtree(output)
    build_toy_base(recipe, output)
