"""The strategy registry: names to strategy factories.

Built-in strategies and third-party ones join the same way, through the entry-point group
``gvp_bench.strategies`` (``name = "package.module:StrategyClass"``); :func:`register` adds
one in-process. Every registered strategy is in :func:`strategies` and so in the
conformance harness.
"""

import warnings
from importlib.metadata import entry_points

from .contract import Strategy

ENTRY_POINT_GROUP = "gvp_bench.strategies"

_factories = {}
_default_instances = {}
_entry_points_loaded = False


def register(name, factory, *, replace=False):
    """Register ``factory`` (a Strategy subclass, or a callable returning a Strategy) as ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable (a Strategy subclass), got {type(factory).__name__}")
    _load_entry_points()
    if name in _factories and not replace:
        raise ValueError(f"a strategy named {name!r} is already registered; pass replace=True to replace it")
    _factories[name] = factory
    _default_instances.pop(name, None)


def unregister(name):
    """Remove the strategy ``name``."""
    _load_entry_points()
    if name not in _factories:
        raise ValueError(_unknown(name))
    del _factories[name]
    _default_instances.pop(name, None)


def _load_entry_points():
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in _factories:
            continue
        try:
            _factories[entry_point.name] = entry_point.load()
        except Exception as error:  # a broken plug-in must not hide the others
            warnings.warn(f"gvp_bench: strategy {entry_point.name!r} ({entry_point.value}) failed to load: {error}",
                          RuntimeWarning, stacklevel=2)


def strategies():
    """The names of the registered strategies, sorted."""
    _load_entry_points()
    return sorted(_factories)


def _unknown(name):
    return f"unknown strategy {name!r}; valid names: {', '.join(strategies())}"


def get_strategy(name, **options):
    """The strategy registered as ``name``; options (``chunk_size=...``) build a configured instance."""
    built = _default_instances.get(name)
    if built is not None and not options:  # the usual call (auto's, on every product): built already
        return built
    _load_entry_points()
    if name not in _factories:
        raise ValueError(_unknown(name))
    if options:
        return _build(name, options)
    _default_instances[name] = _build(name, {})  # not built yet: the usual call returned above
    return _default_instances[name]


def release_all():
    """Release what every strategy built by name keeps per workload (``Strategy.release``): the benchmark runner
    calls it after each cell, so that auto's choices release theirs too."""
    for strategy in list(_default_instances.values()):
        strategy.release()


def _build(name, options):
    strategy = _factories[name](**options)
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy {name!r} built a {type(strategy).__name__}, not a gvp_bench Strategy")
    if strategy.name is None:
        strategy.name = name
    return strategy


def resolve(strategy):
    """A Strategy from the ``strategy=`` argument: a registered name or a Strategy instance."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str):
        return get_strategy(strategy)
    raise TypeError(f"strategy must be a registered name or a Strategy instance, got {type(strategy).__name__}")
