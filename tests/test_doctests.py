"""Run the runnable examples of every public docstring in rectify (numpydoc 'Examples' sections)."""

import doctest
import importlib
import pkgutil

import pytest

import rectify

# Modules whose examples load a real model or start a sampler: exercised by their own tests instead.
SKIP = set()


def _modules():
    import rectify.estimators
    import rectify.llm

    names = set()
    for pkg in (rectify, rectify.estimators, rectify.llm):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name in SKIP or info.name.endswith("__main__"):
                continue
            names.add(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)  # every extra is installed by `make test`
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
