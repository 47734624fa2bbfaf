"""Third-party filters and detectors, without forking: the `curate.plugins` entry-point group.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."curate.plugins"]
    mycompany = "mycompany_curate"            # a module, or "module:function"

Loading the entry point imports the module, whose classes register themselves with
`@curate.filters.register` (a `Filter`) or `@curate.detect.register` (a `Detector`); when the
entry point names a callable instead, it is called with no arguments to do the same. Rules files
then name the plugin's units like the built-in ones, and `curate rules` lists them. A plugin that
fails to load, or takes a name already taken, stops the run with a message naming it.
"""

from __future__ import annotations

import functools
import inspect
from importlib import metadata

from curate.errors import PluginError

GROUP = "curate.plugins"


@functools.lru_cache(maxsize=1)
def load_plugins() -> tuple[str, ...]:
    """Load every installed plugin once; returns their names."""
    from curate.filters.base import FILTERS

    loaded = []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        filters_before = dict(FILTERS)
        detectors_before = _detectors()
        try:
            obj = ep.load()
            if callable(obj) and not inspect.isclass(obj) and not inspect.ismodule(obj):
                obj()
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin is the user's to fix; say which
            raise PluginError(
                f"curate plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from None
        for before, now, kind in ((filters_before, FILTERS, "filter"), (detectors_before, _detectors(), "detector")):
            for name, cls in now.items():
                if name in before and before[name] is not cls:
                    now[name] = before[name]
                    raise PluginError(
                        f"curate plugin {ep.name!r} registers a {kind} named {name!r}, which "
                        f"{before[name].__module__} already has; rename it"
                    )
        loaded.append(ep.name)
    return tuple(loaded)


def _detectors() -> dict:
    try:
        from curate.detect.base import DETECTORS
    except ImportError:  # pragma: no cover - numpy is a core dependency
        return {}
    return DETECTORS
