"""Importing the GFPGAN family of libraries (basicsr, facexlib, gfpgan, realesrgan) on current torchvision.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module
torchvision removed in 0.17; it only uses ``rgb_to_grayscale`` from it, which
lives on in ``torchvision.transforms.functional``. Registering a small module
under the old name lets basicsr import unchanged. These libraries are heavy,
so they are imported only when a GFPGAN restorer is built.
"""

from __future__ import annotations

import importlib
import sys
import types

from ..engine import ConfigError

LEGACY_MODULE = "torchvision.transforms.functional_tensor"
MODEL_LIBRARIES = ("basicsr", "facexlib", "gfpgan", "realesrgan")


def install_torchvision_shim() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable (a no-op where it still exists)."""
    if LEGACY_MODULE in sys.modules:
        return
    try:
        importlib.import_module(LEGACY_MODULE)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    shim = types.ModuleType(LEGACY_MODULE)
    shim.rgb_to_grayscale = functional.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules[LEGACY_MODULE] = shim


def import_model_libraries() -> None:
    """Import basicsr, facexlib, gfpgan and realesrgan, or say in one line how to install them."""
    install_torchvision_shim()
    for name in MODEL_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f"the GFPGAN restorer needs the {name!r} package ({err}); install basicsr, facexlib, gfpgan and "
                "realesrgan with `pip install --no-deps basicsr facexlib gfpgan realesrgan`, or use --restorer classic"
            ) from None


def model_libraries_missing() -> str | None:
    """Why the GFPGAN libraries cannot be imported, or None when they can."""
    try:
        import_model_libraries()
    except ConfigError as err:
        return str(err)
    return None
