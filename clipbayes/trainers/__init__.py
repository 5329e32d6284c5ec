"""The methods: one module per method, each registering itself with ``clipbayes.registry.register_method``.

Importing this package imports every module in it (alphabetically), so a new method file needs no import list.
"""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
