"""Run the runnable examples of every public docstring in rectify (numpydoc 'Examples' sections)."""

import doctest
import importlib
import pkgutil

import pytest

import rectify

# Modules whose examples need an optional heavy dependency are skipped when it is missing.
OPTIONAL = {"torch": "torch", "pymc": "pymc", "openai": "openai", "transformers": "transformers"}
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
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        missing = getattr(err, "name", "") or ""
        if missing.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional dependency {missing}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
