"""``--workload SPEC``: find a workload function and make the Workload it returns.

SPEC is ``FILE.py:FUNCTION`` (a Python file anywhere, imported under a private module name, with
its folder on ``sys.path`` as ``python FILE.py`` has it),
``package.module:FUNCTION`` (an importable module), or the name of an entry point of the group
``gvp_bench.workloads`` (``name = "package.module:FUNCTION"`` in a package's metadata: how a
package ships its own zoo to every command). FUNCTION takes no argument and returns
``(model, x)``, ``(func, params)`` or a :class:`gvp_bench.Workload`; a pair is named after
FUNCTION (after the entry point for an entry point).

A spec that names nothing loadable, or a FUNCTION that returns something else, raises
:class:`WorkloadSpecError`: one line saying what was expected. Errors raised by the user's own
code (a syntax error in the file, a failing model constructor) propagate as they are.
"""

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points

from .workload import as_workload

ENTRY_POINT_GROUP = "gvp_bench.workloads"


class WorkloadSpecError(ValueError):
    """A ``--workload`` spec that cannot be loaded; the message says what was expected."""


def installed():
    """The entry points of the group ``gvp_bench.workloads``, by name."""
    return {entry_point.name: entry_point for entry_point in entry_points(group=ENTRY_POINT_GROUP)}


def load(spec):
    """The Workload ``spec`` names (see the module's docstring)."""
    if not isinstance(spec, str) or not spec:
        raise WorkloadSpecError(f"expected FILE.py:FUNCTION, package.module:FUNCTION or an installed workload name, "
                                f"got {spec!r}")
    if ":" not in spec:
        return _from_entry_point(spec)
    where, _, function_name = spec.rpartition(":")
    if not function_name.isidentifier():
        raise WorkloadSpecError(f"{spec}: expected FILE.py:FUNCTION or package.module:FUNCTION, "
                                f"with a function name after the colon")
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    module = _module_from_file(spec, where) if is_file else _module(spec, where)
    function = getattr(module, function_name, None)
    if function is None:
        raise WorkloadSpecError(f"{spec}: {where} has no function {function_name!r}")
    return _call(spec, function, function_name)


def _from_entry_point(spec):
    found = installed()
    if spec not in found:
        names = ", ".join(sorted(found)) or f"none installed (group {ENTRY_POINT_GROUP})"
        raise WorkloadSpecError(f"{spec}: not FILE.py:FUNCTION, package.module:FUNCTION or an installed workload; "
                                f"installed workloads: {names}")
    return _call(spec, found[spec].load(), spec)


def _module_from_file(spec, path):
    if not os.path.isfile(path):
        raise WorkloadSpecError(f"{spec}: no such file {path!r}")
    path = os.path.abspath(path)
    name = "gvp_bench_workload_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    folder = os.path.dirname(path)
    if folder not in sys.path:  # as `python FILE.py` runs it: the modules beside it import
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name while it runs
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _module(spec, name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            raise WorkloadSpecError(f"{spec}: no module named {error.name!r} (nor a file {name}.py); "
                                    "expected FILE.py:FUNCTION or package.module:FUNCTION") from None
        raise


def _call(spec, function, name):
    if not callable(function):
        raise WorkloadSpecError(f"{spec}: {name} is a {type(function).__name__}, not a function returning "
                                "(model, x), (func, params) or a gvp_bench.Workload")
    value = function()
    try:
        return as_workload(value, name=name)
    except (TypeError, ValueError) as error:
        raise WorkloadSpecError(f"{spec}: {name}() returned the wrong thing: {error}") from None
