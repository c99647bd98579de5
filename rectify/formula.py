"""The one module that talks to formulaic: learn a model spec on the pilot, replay it strictly.

formulaic, replaying a spec on new data, encodes an unseen category as the reference level with only
a warning, and drops rows with missing covariates under its default ``na_action``. Here a spec is
always materialised with ``na_action="raise"``, and a population row with a category the pilot never
showed, or with a missing covariate, is refused with an error that names the column.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._checks import check_labels, check_not_datetime, check_numeric_text, check_unique
from .errors import InputError, MissingCovariateError, UnseenLevelError

__all__ = ["ModelFrame", "build_design", "check_variables", "outcome_numbers", "replay_design", "check_columns", "check_formula", "plain_columns",
           "plain_design"]


@dataclass(frozen=True)
class ModelFrame:
    """Design matrices of the pilot and (optionally) the population, from one learned spec."""

    X: np.ndarray
    y: np.ndarray | None
    X_pop: np.ndarray | None
    terms: list
    outcome: str | None
    spec: Any


def check_columns(df: pd.DataFrame, columns, frame: str) -> None:
    """Refuse absent columns and missing values in ``columns`` of ``df``, naming them.

    Examples
    --------
    >>> check_columns(pd.DataFrame({"a": [1.0, 2.0]}), ["a"], "pilot")
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"argument '{frame}' must be a pandas DataFrame, got {type(df).__name__}")
    columns = list(columns)
    check_labels(columns, frame)
    check_unique(df, columns, frame)
    for c in columns:
        if c not in df.columns:
            raise MissingCovariateError(
                f"column '{c}' is not in the {frame} data; available columns: {', '.join(map(str, df.columns[:12]))}"
            )
        miss = int(df[c].isna().sum())
        if miss:
            raise MissingCovariateError(
                f"column '{c}' has {miss} missing value(s) in the {frame} data; rectify does not drop rows "
                f"silently: impute them, or subset the {frame} explicitly before estimating"
            )


def check_variables(rhs_text: str, rhs: Any, df: pd.DataFrame, frame: str) -> None:
    """Refuse, by name, right-hand-side columns that are duplicated, datetimes, or numbers stored as
    text used as a bare term (``C(x)`` asks for categories explicitly).

    Examples
    --------
    >>> from formulaic import Formula
    >>> df = pd.DataFrame({"x": ["1", "2"], "g": ["1", "2"]})
    >>> check_variables("C(g)", Formula("C(g)"), df, "pilot")
    >>> try:
    ...     check_variables("x + C(g)", Formula("x + C(g)"), df, "pilot")
    ... except InputError as err:
    ...     print(str(err)[:52])
    column 'x' of the pilot holds numbers stored as text
    """
    import re

    used = [v for v in sorted(getattr(rhs, "required_variables", set())) if isinstance(v, str) and v in df.columns]
    check_unique(df, used, frame)
    for v in used:
        check_not_datetime(df[v], v, frame)
        wrapped = len(re.findall(rf"\bC\(\s*{re.escape(v)}\b", rhs_text))
        if len(re.findall(rf"(?<![\w.]){re.escape(v)}\b", rhs_text)) > wrapped:
            check_numeric_text(df[v], v, frame, categories_hint=True)


def outcome_numbers(y: Any, outcome: str | None, frame: str = "pilot") -> np.ndarray:
    """The outcome as floats, or an :class:`InputError` naming it (text that is not numbers).

    Examples
    --------
    >>> outcome_numbers(np.array([0, 1]), "agree").tolist()
    [0.0, 1.0]
    """
    try:
        return np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        vals = sorted({str(v) for v in np.asarray(y, dtype=object).ravel()})[:4]
        raise InputError(f"outcome column {outcome!r} of the {frame} is not numeric (values such as {vals}); "
                         f"recode it as numbers first, e.g. a 0/1 column for logit: "
                         f"(df[{outcome!r}] == {vals[-1]!r}).astype(int)") from None


def _spec_variables(spec) -> list[str]:
    out = []
    for v in sorted(getattr(spec, "required_variables", set())):
        if v in {"C", "np", "center", "scale", "bs", "poly", "log", "exp", "I", "Q", "T", "S"}:
            continue
        out.append(v)
    return out


def _materialise(spec, df: pd.DataFrame, frame: str):
    # names the formula evaluates that are neither data columns nor numpy functions must be columns
    check_columns(df, [v for v in _spec_variables(spec) if v in df.columns or not hasattr(np, v)], frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mm = spec.get_model_matrix(df, na_action="raise")
        except Exception as err:  # formulaic wraps evaluation errors in its own types
            raise InputError(f"could not build the design for the {frame} data: {_plain(str(err))}; check the "
                             f"formula's terms against the {frame}'s columns and types") from None
    for w in caught:
        if type(w.message).__name__ == "DataMismatchWarning" or "outside of the nominated levels" in str(w.message):
            named = _unseen_levels(spec, df)
            what = ("; ".join(f"column '{c}' has {lv}" for c, lv in named) if named
                    else _plain(str(w.message)))
            raise UnseenLevelError(
                f"the {frame} data contain categories the pilot never showed ({what}). A coefficient for "
                f"them cannot be estimated: merge them into a seen category or restrict the {frame}"
            )
    return mm


def _unseen_levels(spec, df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(column, levels) of plain categorical factors (``g`` or ``C(g)``) whose levels the spec never saw."""
    import re

    out = []
    for factor, (_, state) in getattr(spec, "encoder_state", {}).items():
        m = re.fullmatch(r"\s*(?:C\(\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:,[^)]*)?\)?\s*", str(factor))
        if not m or m.group(1) not in df.columns or "categories" not in state:
            continue
        seen = set(state["categories"])
        new = sorted({str(v) for v in pd.unique(df[m.group(1)]) if v not in seen and not pd.isna(v)})
        if new:
            out.append((m.group(1), new))
    return out


def _plain(text: str) -> str:
    """A formulaic message without its terminal colour codes and marker characters."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;]*m|[\u29da\u29db]", "", text).split())


def build_design(formula: str, pilot: pd.DataFrame, population: pd.DataFrame | None = None,
                 intercept: bool = True) -> ModelFrame:
    """Learn the model spec of ``formula`` on the pilot and replay it on the population.

    Parameters
    ----------
    formula : str
        A Wilkinson formula, e.g. ``"trust ~ age + C(ideology)"``.
    pilot : DataFrame
        The pilot (human answers and covariates).
    population : DataFrame, optional
        The frame; only the right-hand side is replayed on it.
    intercept : bool
        Keep the intercept column (``False`` drops it after encoding, for ordinal models, so that the
        categorical contrasts stay reduced-rank).

    Returns
    -------
    ModelFrame

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 2, 3], "g": ["a", "b", "a", "b"]})
    >>> mf = build_design("y ~ x + C(g)", pilot, pilot[["x", "g"]])
    >>> mf.terms
    ['Intercept', 'x', 'C(g)[T.b]']
    """
    from formulaic import Formula

    if not isinstance(formula, str) or "~" not in formula:
        raise InputError(f"argument 'formula' must be a string like 'y ~ x1 + x2', got {formula!r}")
    check_formula(formula)  # before formulaic evaluates any part of it
    if not isinstance(pilot, pd.DataFrame):
        raise InputError(f"argument 'pilot' must be a pandas DataFrame, got {type(pilot).__name__}")
    if len(pilot) == 0:
        raise InputError("argument 'pilot' is empty: estimation needs pilot rows with human answers")
    try:
        Formula(formula)  # parse once up front for a clear syntax error
    except Exception as err:
        raise InputError(f"could not parse formula {formula!r}: {_plain(str(err))}; check its brackets and "
                         f"operators (e.g. 'y ~ x1 + C(x2)')") from None
    lhs_name = formula.split("~")[0].strip()
    if lhs_name and lhs_name not in pilot.columns:
        raise MissingCovariateError(f"outcome column '{lhs_name}' named in the formula is not in the pilot data; "
                                    f"check the spelling or add the column (available: "
                                    f"{', '.join(map(str, pilot.columns[:12]))})")
    if lhs_name:
        check_columns(pilot, [lhs_name], "pilot")
        check_not_datetime(pilot[lhs_name], lhs_name, "pilot")
        check_numeric_text(pilot[lhs_name], lhs_name, "pilot")
    rhs = Formula(formula.split("~", 1)[1])
    check_variables(formula.split("~", 1)[1], rhs, pilot, "pilot")
    try:
        mm_rhs = rhs.get_model_matrix(pilot, na_action="raise")
    except Exception as err:
        for v in sorted(rhs.required_variables if hasattr(rhs, "required_variables") else []):
            if v not in pilot.columns and not hasattr(np, v) and v not in {"C", "I", "Q"}:
                raise MissingCovariateError(
                    f"column '{v}' named in the formula is not in the pilot data; check the spelling or add the "
                    f"column (available: {', '.join(map(str, pilot.columns[:12]))})") from None
        missing = [c for c in pilot.columns if c in formula and pilot[c].isna().any()]
        if missing:
            raise MissingCovariateError(
                f"column '{missing[0]}' has {int(pilot[missing[0]].isna().sum())} missing value(s) in the pilot; "
                f"rectify does not drop rows silently: impute or subset first"
            ) from None
        raise InputError(f"could not build the design for the pilot data: {_plain(str(err))}; check the "
                         f"formula's terms against the pilot's columns and types") from None
    if not hasattr(mm_rhs, "columns"):  # e.g. 'y ~ x | g': formulaic builds several matrices
        raise InputError(f"formula {formula!r} has several parts ('|'); rectify fits one design: write the "
                         "terms on one right-hand side (e.g. 'y ~ x + g'), and name groups with by= or groups=")
    spec = mm_rhs.model_spec
    terms = list(mm_rhs.columns)
    X = np.asarray(mm_rhs, dtype=float)
    y = pilot[lhs_name].to_numpy() if lhs_name else None
    X_pop = None
    if population is not None:
        if not isinstance(population, pd.DataFrame):
            raise InputError(f"argument 'population' must be a pandas DataFrame, got {type(population).__name__}")
        if len(population) == 0:
            raise InputError("argument 'population' is empty: the frame needs at least one row")
        check_variables(formula.split("~", 1)[1], rhs, population, "population")
        X_pop = np.asarray(_materialise(spec, population, "population"), dtype=float)
    if not intercept and "Intercept" in terms:
        j = terms.index("Intercept")
        X = np.delete(X, j, axis=1)
        X_pop = None if X_pop is None else np.delete(X_pop, j, axis=1)
        terms = terms[:j] + terms[j + 1:]
    return ModelFrame(X=X, y=y, X_pop=X_pop, terms=terms, outcome=lhs_name or None, spec=spec)


def plain_columns(spec, terms) -> list | None:
    """The data column behind each design column when every term is a plain numeric column.

    Returns one entry per design column -- the column name, or ``None`` for the intercept -- when each
    term of the learned spec is the intercept or a single numeric data column looked up by name
    (``y ~ age + income``), and ``None`` otherwise (categories, transforms, interactions). Replaying
    such a spec is reading those columns: callers can skip formulaic on the population, but must
    still refuse missing values there (see :func:`rectify.verbs.ols`).

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 2, 4], "g": ["a", "b", "a", "b"]})
    >>> plain_columns(build_design("y ~ x", pilot).spec, ["Intercept", "x"])
    [None, 'x']
    >>> plain_columns(build_design("y ~ x + C(g)", pilot).spec, ["Intercept", "x", "C(g)[T.b]"]) is None
    True
    """
    try:
        structure = list(spec.structure)
        state = dict(spec.encoder_state)
    except (AttributeError, TypeError):
        return None
    out = []
    for entry in structure:
        factors = list(getattr(entry.term, "factors", []))
        if len(factors) != 1 or len(entry.columns) != 1:
            return None
        f = factors[0]
        method = getattr(getattr(f, "eval_method", None), "value", None)
        if method == "literal" and str(f.expr) == "1" and entry.columns[0] == "Intercept":
            out.append(None)
            continue
        kind = getattr(state.get(f.expr, (None,))[0], "value", None)
        if method != "lookup" or kind != "numerical" or entry.columns[0] != f.expr:
            return None
        out.append(f.expr)
    if "Intercept" not in terms:  # dropped after encoding (ordinal models)
        out = [c for c in out if c is not None]
    if not any(c is not None for c in out) or out != [None if t == "Intercept" else t for t in terms]:
        return None
    return out


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def plain_design(formula: str, pilot: pd.DataFrame, intercept: bool = True):
    """The pilot's design without formulaic when the formula is ``y ~ a + b + ...`` over numeric columns.

    Returns ``(X, y, terms, outcome, names)`` -- ``names`` as in :func:`plain_columns` -- exactly as
    :func:`build_design` would build them (formulaic keeps plain terms in the order written, with the
    intercept first), or ``None`` whenever anything is not plain: a category, a transform, an
    interaction, a repeated term, a non-numeric or boolean column, or a missing value in the pilot.
    Callers then use :func:`build_design`, which also produces every error message.

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 2, 4], "k": [1, 2, 3, 5]})
    >>> X, y, terms, outcome, names = plain_design("y ~ k + x", pilot)
    >>> terms, names, X[1].tolist()
    (['Intercept', 'k', 'x'], [None, 'k', 'x'], [1.0, 2.0, 1.0])
    >>> plain_design("y ~ np.log(x + 1)", pilot) is None
    True
    """
    import re

    if not isinstance(formula, str) or formula.count("~") != 1 or not isinstance(pilot, pd.DataFrame) or not len(pilot):
        return None
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not re.fullmatch(_NAME, lhs):
        return None
    const = True
    m = re.fullmatch(r"(.*?)\s*-\s*1", rhs)
    if m:
        rhs, const = m.group(1), False
    parts = [t.strip() for t in rhs.split("+")]
    if parts and parts[0] in ("0", "1"):
        const = const and parts.pop(0) == "1"
    if not parts or len(set(parts)) != len(parts) or not all(re.fullmatch(_NAME, t) for t in parts):
        return None
    names = [lhs, *parts]
    cols = [pilot.get(c) for c in names]  # each column read once
    if lhs in parts or not all(isinstance(c, pd.Series) for c in cols):
        return None
    if not all(isinstance(c.dtype, np.dtype) and c.dtype.kind in "fiu" for c in cols):
        return None
    arrays = [c.to_numpy(dtype=float) for c in cols]
    if not all(np.isfinite(a).all() for a in arrays):  # missing/infinite: build_design says what to do
        return None
    keep = const and intercept
    X = np.column_stack(([np.ones(len(pilot))] if keep else []) + arrays[1:])
    terms = (["Intercept"] if keep else []) + parts
    y = cols[0].to_numpy()
    return X, y, terms, lhs, ([None] if keep else []) + parts


def replay_design(spec, data: pd.DataFrame, frame: str = "new") -> np.ndarray:
    """Materialise a learned spec on new data, strictly (see module notes).

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3], "g": ["a", "b", "a"]})
    >>> mf = build_design("y ~ C(g)", pilot)
    >>> replay_design(mf.spec, pd.DataFrame({"g": ["b"]})).tolist()
    [[1.0, 1.0]]
    """
    return np.asarray(_materialise(spec, data, frame), dtype=float)


# -- formulas are data: an allow-list check before formulaic evaluates anything -------------------
# formulaic evaluates the Python parts of a formula (``{...}``, ``I(...)``, ``np.log(x)``, ``C(...)``)
# with ``eval``; a formula from a configuration file or a user must therefore never reach it
# unchecked. Plain names are data-column look-ups (never evaluated) and pass; every Python part is
# parsed with :mod:`ast` and may only use column names, numbers, arithmetic and comparisons, and
# calls of the functions below.
_FORMULA_FUNCTIONS = frozenset({
    "C", "I", "Q", "center", "scale", "standardize", "poly", "bs", "cs", "cr", "cc", "lag", "hashed",
    "log", "log2", "log10", "exp", "exp2", "exp10", "Treatment", "Sum", "Helmert", "Poly", "Diff",
})
_NUMPY_FUNCTIONS = frozenset({
    "log", "log1p", "log2", "log10", "exp", "expm1", "exp2", "sqrt", "cbrt", "square", "abs", "absolute",
    "fabs", "sign", "floor", "ceil", "round", "rint", "trunc", "clip", "minimum", "maximum", "power",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "where", "isnan", "isfinite", "pi", "e",
})
_CONTRASTS = frozenset({"treatment", "sum", "helmert", "poly", "diff"})
_MODULES = {"np": _NUMPY_FUNCTIONS, "numpy": _NUMPY_FUNCTIONS, "contr": _CONTRASTS}
_FORMULA_HELP = (
    "a formula may use column names (quote odd ones with backticks), numbers, the operators + - * / : ** | ~, "
    "and C(...), I(...) with arithmetic or comparisons, Q('name'), center/scale/standardize/poly/bs, log/exp "
    "and numpy maths such as np.log; rectify never runs other code from a formula"
)


class _UnsafeTerm(Exception):
    pass


def _check_python_node(node, *, literal_ok: bool = False) -> None:
    """Walk one Python part of a formula; raise ``_UnsafeTerm`` for anything off the allow-list."""
    import ast

    if isinstance(node, ast.Expression):
        return _check_python_node(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or node.value is None or isinstance(node.value, (int, float)):
            return
        if isinstance(node.value, str) and literal_ok:
            return
        raise _UnsafeTerm(f"the constant {node.value!r} is not allowed here")
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise _UnsafeTerm(f"the name {node.id!r} is not a column")
        if node.id in _MODULES:
            raise _UnsafeTerm(f"{node.id!r} may only be used as {node.id}.<function>")
        return
    if isinstance(node, ast.Attribute):
        base = node.value.id if isinstance(node.value, ast.Name) else None
        if base not in _MODULES or node.attr not in _MODULES[base]:
            raise _UnsafeTerm(f"attribute access '.{node.attr}' is not allowed (only np.<maths function> and "
                              "contr.<contrast>)")
        return
    if isinstance(node, ast.Call):
        fn = node.func
        if isinstance(fn, ast.Name):
            if fn.id not in _FORMULA_FUNCTIONS:
                raise _UnsafeTerm(f"calling {fn.id!r} is not allowed")
        else:
            _check_python_node(fn)  # np.<function> / contr.<contrast> or refused
        for a in node.args:
            _check_python_node(a, literal_ok=True)
        for kw in node.keywords:
            if kw.arg is None or kw.arg.startswith("_"):
                raise _UnsafeTerm("'**' and private keyword arguments are not allowed")
            _check_python_node(kw.value, literal_ok=True)
        return
    if isinstance(node, (ast.List, ast.Tuple)) and literal_ok:
        for elt in node.elts:
            _check_python_node(elt, literal_ok=True)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not, ast.Invert)):
        return _check_python_node(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(
        node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr,
                  ast.BitXor)
    ):
        if isinstance(node.op, ast.Pow):
            exp = node.right.operand if isinstance(node.right, ast.UnaryOp) else node.right
            if not (isinstance(exp, ast.Constant) and isinstance(exp.value, (int, float))
                    and not isinstance(exp.value, bool) and abs(exp.value) <= 100):
                raise _UnsafeTerm("a power needs a number between -100 and 100 as its exponent")
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.left)):
                raise _UnsafeTerm("a power of a power is not allowed")
        _check_python_node(node.left)
        _check_python_node(node.right)
        return
    if isinstance(node, ast.Compare) and all(
        isinstance(op, (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in node.ops
    ):
        for part in [node.left, *node.comparators]:
            _check_python_node(part, literal_ok=True)
        return
    raise _UnsafeTerm(f"Python syntax {type(node).__name__} is not allowed")


def check_formula(formula: Any, argument: str = "formula", error: type[Exception] = InputError) -> str:
    """Refuse a formula that would make formulaic run anything but column arithmetic.

    formulaic evaluates the Python parts of a formula with ``eval``; this allow-list check runs on
    the formula text *before* formulaic sees it (nothing is evaluated here). Plain names are
    column look-ups and always pass; Python parts may use column names, numbers, arithmetic and
    comparisons, ``C``/``I``/``Q``, formulaic's transforms (``center``, ``scale``,
    ``standardize``, ``poly``, ``bs``, ``log``, ...), ``np.<maths function>`` and
    ``contr.<contrast>``. Attribute access, other calls, names starting with ``__``, lambdas,
    subscripts, comprehensions and powers with a non-numeric or huge exponent are refused.

    Parameters
    ----------
    formula : str
    argument : str
        The argument or configuration key named in the error message.
    error : exception class
        Raised on refusal (default :class:`~rectify.errors.InputError`; ``ConfigError`` for
        configuration files).

    Returns
    -------
    str
        The formula, unchanged.

    Examples
    --------
    >>> check_formula("y ~ np.log(x) + C(g, contr.treatment('b')) + I(x**2)")
    "y ~ np.log(x) + C(g, contr.treatment('b')) + I(x**2)"
    >>> try:
    ...     check_formula("y ~ {__import__('os').getcwd()}")
    ... except InputError as err:
    ...     print(str(err).split(':')[0])
    argument 'formula' term "__import__('os').getcwd()" is not allowed
    """
    import ast

    from formulaic.parser.algos.tokenize import tokenize
    from formulaic.utils.code import sanitize_variable_names

    if not isinstance(formula, str):
        raise error(f"argument {argument!r} must be a formula string like 'y ~ x1 + x2', got {type(formula).__name__}")
    try:
        tokens = list(tokenize(formula))
    except Exception as err:  # formulaic's tokenizer: unbalanced quotes or brackets
        raise error(f"argument {argument!r}: could not read formula {formula!r} ({_plain(str(err))}); check its "
                    f"brackets and quotes; {_FORMULA_HELP}") from None
    for tok in tokens:
        if tok.kind.value != "python":
            continue  # names are look-ups in the data, values are literals, the rest is formula syntax
        code = sanitize_variable_names(tok.token, {}, {}, template="_bt_{}")
        try:
            tree = ast.parse(code.strip(), mode="eval")
            _check_python_node(tree)
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            raise error(f"argument {argument!r} term {tok.token!r} is not allowed: it is not a valid expression; "
                        f"{_FORMULA_HELP}") from None
        except _UnsafeTerm as why:
            raise error(f"argument {argument!r} term {tok.token!r} is not allowed: {why}; {_FORMULA_HELP}") from None
    return formula
