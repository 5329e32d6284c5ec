"""Work-arounds that let unpatched Dassl.pytorch and OpenAI CLIP run on current torch / setuptools.

Import Dassl and CLIP only through :func:`import_dassl` and :func:`import_clip` (or after calling
:func:`prepare_imports`). Each fix here is a documented breakage of the upstream code (see README, "Compatibility"):

* ``import dassl.data`` imports ``wilds``. Without it the import fails; with it, ``wilds.version`` starts a
  thread that asks PyPI for the newest release. We register a lazy stand-in that imports the real ``wilds`` only
  when a WILDS dataset is actually requested, and says how to install it if it is absent.
* ``import clip`` needs ``pkg_resources`` (removed in setuptools >= 82) only for ``packaging.version``; where it is
  missing we provide a module that exposes ``packaging``.
* Checkpoint loading (``weights_only``) and the warm-up schedulers are handled in :mod:`clipbayes.engine`.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

_DASSL_INSTALL_HINT = (
    "Dassl.pytorch is not installed. It is not on PyPI; install it from its git repository:\n"
    "  pip install --no-build-isolation --no-deps "
    "'dassl @ git+https://github.com/KaiyangZhou/Dassl.pytorch@c61a1b570ac6333bd50fb5ae06aea59002fb20bb'\n"
    "(see README.md, 'Set-up')."
)


def _install_lazy_wilds() -> None:
    """Put a stand-in for ``wilds`` in ``sys.modules`` that defers the real import to first use."""
    if "wilds" in sys.modules:
        return
    installed = importlib.util.find_spec("wilds") is not None
    stand_in = types.ModuleType("wilds")
    stand_in.__doc__ = "clipbayes stand-in: the real wilds package is imported on first use of get_dataset()."

    def get_dataset(*args, **kwargs):
        if not installed:
            raise ImportError(
                "This dataset is a WILDS dataset and needs the 'wilds' package: pip install wilds")
        del sys.modules["wilds"]
        real = importlib.import_module("wilds")
        return real.get_dataset(*args, **kwargs)

    stand_in.get_dataset = get_dataset
    sys.modules["wilds"] = stand_in


def _install_pkg_resources_shim() -> None:
    """Give ``clip`` the ``pkg_resources.packaging`` it imports, without requiring setuptools < 82."""
    if "pkg_resources" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importlib.import_module("pkg_resources")
            return
        except ImportError:
            pass
    import packaging.version  # noqa: F401  (declared dependency)
    import packaging

    shim = types.ModuleType("pkg_resources")
    shim.packaging = packaging
    sys.modules["pkg_resources"] = shim


def prepare_imports() -> None:
    """Apply every import-time work-around; safe to call many times."""
    _install_lazy_wilds()
    _install_pkg_resources_shim()


def dassl_available() -> bool:
    return importlib.util.find_spec("dassl") is not None


def import_dassl():
    """Import ``dassl`` with the work-arounds applied; a clear ImportError when it is not installed."""
    prepare_imports()
    if not dassl_available():
        raise ImportError(_DASSL_INSTALL_HINT)
    import dassl
    import dassl.data  # noqa: F401  (triggers the wilds import under our stand-in)
    return dassl


def import_clip():
    """Import OpenAI's ``clip`` package (``openai-clip`` on PyPI) with the ``pkg_resources`` shim."""
    prepare_imports()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        import clip
    return clip
