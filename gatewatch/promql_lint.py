"""A PromQL linter that checks every metric and label against the metric catalog.

The dashboards and alert rules are generated from :mod:`gatewatch.catalog`, but the PromQL text
itself is still hand-written, so a typo in a label or a grouping that drops the label a later
``on (...)`` needs would only show up as an empty panel or a silent alert. This module parses
PromQL (Prometheus 2.42 grammar, plus Grafana ``$variables`` where a number or duration goes),
infers the value type and the label set of every sub-expression, and reports:

* a metric that is neither a catalog series nor a recording rule we generate;
* a label in a matcher, ``by``/``without``, ``on``/``ignoring``, ``group_left``/``group_right``,
  or a ``label_replace``/``label_join`` source that the series cannot carry at that point;
* ``histogram_quantile`` over a vector without ``le``;
* vector matches whose two sides can never line up (different label sets, no ``on``/``ignoring``);
* type errors (``rate`` of an instant vector, unknown functions, scalar comparisons without
  ``bool``) and syntax errors, with the character offset.

Pure: no I/O, no globals beyond the read-only function tables below.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from gatewatch.catalog import CATALOG, Catalog, MetricType

# ---- errors and results ------------------------------------------------------------------------


class PromQLSyntaxError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        self.message = message
        self.pos = pos
        super().__init__(f"at char {pos}: {message}")


@dataclass(frozen=True)
class LintProblem:
    expr: str
    pos: int  # 0-based character offset into ``expr``
    message: str

    def __str__(self) -> str:
        return f"{self.message} (at char {self.pos} of {self.expr!r})"


# ---- lexer -------------------------------------------------------------------------------------


class Tok(Enum):
    IDENT = "identifier"
    NUMBER = "number"
    DURATION = "duration"
    STRING = "string"
    VARIABLE = "variable"  # a Grafana template variable: $name or ${name[:format]}
    OP = "operator"
    LPAREN = "("
    RPAREN = ")"
    LBRACE = "{"
    RBRACE = "}"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    COLON = ":"
    AT = "@"
    EOF = "end of expression"


@dataclass(frozen=True)
class Token:
    kind: Tok
    text: str
    pos: int


_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_])")
_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_IDENT_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_RE = re.compile(r"\$(?:\{[A-Za-z0-9_.:]+\}|[A-Za-z0-9_]+)")
_OPERATORS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", ">", "<", "=")
_PUNCT = {
    "(": Tok.LPAREN, ")": Tok.RPAREN, "{": Tok.LBRACE, "}": Tok.RBRACE, "[": Tok.LBRACKET,
    "]": Tok.RBRACKET, ",": Tok.COMMA, "@": Tok.AT,
}  # fmt: skip


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    i = start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and quote != "`":
            if i + 1 >= len(text):
                break
            out.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if ch == "\n" and quote != "`":
            raise PromQLSyntaxError("unterminated string (newline inside quotes)", start)
        out.append(ch)
        i += 1
    raise PromQLSyntaxError("unterminated string", start)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    in_brackets = False  # inside [...] only durations, variables and ':' make sense
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "#":  # comment to end of line
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if in_brackets and ch == ":":
            tokens.append(Token(Tok.COLON, ":", i))
            i += 1
            continue
        if ch in _PUNCT:
            if ch == "[":
                in_brackets = True
            elif ch == "]":
                in_brackets = False
            tokens.append(Token(_PUNCT[ch], ch, i))
            i += 1
            continue
        if ch in "\"'`":
            value, end = _read_string(text, i)
            tokens.append(Token(Tok.STRING, value, i))
            i = end
            continue
        if ch == "$":
            m = _VARIABLE_RE.match(text, i)
            if m is None:
                raise PromQLSyntaxError("'$' must start a template variable like $name or ${name}", i)
            tokens.append(Token(Tok.VARIABLE, m.group(), i))
            i = m.end()
            continue
        if ch.isdigit() or (ch == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            m = _DURATION_RE.match(text, i)
            if m is not None:
                tokens.append(Token(Tok.DURATION, m.group(), i))
                i = m.end()
                continue
            m = _NUMBER_RE.match(text, i)
            assert m is not None  # a digit or '.digit' always matches
            if m.end() < len(text) and (text[m.end()].isalpha() or text[m.end()] == "_"):
                raise PromQLSyntaxError(f"bad number or duration {text[i : m.end() + 1]!r}", i)
            tokens.append(Token(Tok.NUMBER, m.group(), i))
            i = m.end()
            continue
        m = _IDENT_RE.match(text, i)
        if m is not None:
            word = m.group()
            kind = Tok.NUMBER if word.lower() in ("inf", "nan") else Tok.IDENT
            tokens.append(Token(kind, word, i))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token(Tok.OP, op, i))
                i += len(op)
                break
        else:
            raise PromQLSyntaxError(f"unexpected character {ch!r}", i)
    tokens.append(Token(Tok.EOF, "", len(text)))
    return tokens


# ---- syntax tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str
    pos: int


@dataclass(frozen=True)
class VectorSelector:
    name: str | None
    matchers: tuple[Matcher, ...]
    pos: int
    offset: str | None = None

    @property
    def metric(self) -> str | None:
        """The metric name, from the leading identifier or an ``__name__="..."`` matcher."""
        if self.name is not None:
            return self.name
        for m in self.matchers:
            if m.label == "__name__" and m.op == "=":
                return m.value
        return None


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range: str  # a duration or a template variable
    pos: int
    offset: str | None = None


@dataclass(frozen=True)
class Subquery:
    expr: Expr
    range: str
    step: str | None
    pos: int
    offset: str | None = None


@dataclass(frozen=True)
class NumberLiteral:
    text: str  # a number, or a template variable standing for one
    pos: int


@dataclass(frozen=True)
class StringLiteral:
    value: str
    pos: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True)
class Aggregation:
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool
    has_grouping: bool
    pos: int


@dataclass(frozen=True)
class VectorMatching:
    on: bool  # on(...) when true, ignoring(...) when false
    labels: tuple[str, ...]
    card: str  # "one-to-one", "group_left" or "group_right"
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool
    matching: VectorMatching | None
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str
    expr: Expr
    pos: int


@dataclass(frozen=True)
class Paren:
    expr: Expr
    pos: int


Expr = (
    VectorSelector | MatrixSelector | Subquery | NumberLiteral | StringLiteral | Call | Aggregation
    | Binary | Unary | Paren
)  # fmt: skip


# ---- parser ------------------------------------------------------------------------------------

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
     "quantile"}
)  # fmt: skip
_PARAM_AGGREGATIONS = frozenset({"count_values", "bottomk", "topk", "quantile"})
_SET_OPS = frozenset({"and", "or", "unless"})
_COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
_PRECEDENCE: dict[str, int] = {
    "or": 1, "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}  # fmt: skip
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # token helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, kind: Tok, what: str | None = None) -> Token:
        tok = self.next()
        if tok.kind is not kind:
            found = tok.text or tok.kind.value
            raise PromQLSyntaxError(f"expected {what or kind.value}, found {found!r}", tok.pos)
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind is Tok.IDENT and tok.text in words

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind is Tok.OP and tok.text in _PRECEDENCE:
            return tok.text
        if tok.kind is Tok.IDENT and tok.text in ("and", "or", "unless", "atan2"):
            return tok.text
        return None

    # grammar
    def parse(self) -> Expr:
        expr = self.expression(0)
        tok = self.peek()
        if tok.kind is not Tok.EOF:
            raise PromQLSyntaxError(
                f"unexpected {tok.text or tok.kind.value!r} after a complete expression", tok.pos
            )
        return expr

    def expression(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while True:
            op = self.binary_op()
            if op is None or _PRECEDENCE[op] < min_prec:
                return lhs
            op_tok = self.next()
            return_bool = False
            if self.at_word("bool"):
                if op not in _COMPARISONS:
                    raise PromQLSyntaxError(
                        "bool modifier only applies to comparison operators", self.peek().pos
                    )
                self.next()
                return_bool = True
            matching = self.vector_matching(op)
            next_min = _PRECEDENCE[op] if op == "^" else _PRECEDENCE[op] + 1  # '^' is right-associative
            rhs = self.expression(next_min)
            lhs = Binary(op, lhs, rhs, return_bool, matching, op_tok.pos)

    def vector_matching(self, op: str) -> VectorMatching | None:
        if not self.at_word("on", "ignoring"):
            if self.at_word("group_left", "group_right"):
                raise PromQLSyntaxError(
                    "group_left/group_right needs on(...) or ignoring(...) first", self.peek().pos
                )
            return None
        on = self.next().text == "on"
        labels = self.label_list()
        card = "one-to-one"
        include: tuple[str, ...] = ()
        if self.at_word("group_left", "group_right"):
            tok = self.next()
            if op in _SET_OPS:
                raise PromQLSyntaxError(f"{tok.text} cannot be used with set operator {op!r}", tok.pos)
            card = tok.text
            include = self.label_list() if self.peek().kind is Tok.LPAREN else ()
        return VectorMatching(on, labels, card, include)

    def label_list(self) -> tuple[str, ...]:
        self.expect(Tok.LPAREN, "'(' before a label list")
        labels: list[str] = []
        while self.peek().kind is not Tok.RPAREN:
            tok = self.expect(Tok.IDENT, "a label name")
            if not _LABEL_RE.fullmatch(tok.text):
                raise PromQLSyntaxError(f"{tok.text!r} is not a valid label name", tok.pos)
            labels.append(tok.text)
            if self.peek().kind is Tok.COMMA:
                self.next()
            elif self.peek().kind is not Tok.RPAREN:
                raise PromQLSyntaxError("expected ',' or ')' in label list", self.peek().pos)
        self.next()
        return tuple(labels)

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind is Tok.OP and tok.text in ("+", "-"):
            self.next()
            # unary minus binds looser than '^': -2^2 is -(2^2)
            return Unary(tok.text, self.expression(_PRECEDENCE["^"]), tok.pos)
        return self.postfix(self.primary())

    def duration(self, what: str) -> str:
        tok = self.next()
        if tok.kind in (Tok.DURATION, Tok.VARIABLE):
            return tok.text
        raise PromQLSyntaxError(
            f"expected a duration for {what}, found {tok.text or tok.kind.value!r}", tok.pos
        )

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok.kind is Tok.LBRACKET:
                self.next()
                rng = self.duration("a range")
                if self.peek().kind is Tok.COLON:
                    self.next()
                    step = None if self.peek().kind is Tok.RBRACKET else self.duration("a subquery step")
                    self.expect(Tok.RBRACKET, "']'")
                    expr = Subquery(expr, rng, step, tok.pos)
                    continue
                self.expect(Tok.RBRACKET, "']'")
                if not isinstance(expr, VectorSelector) or expr.offset is not None:
                    raise PromQLSyntaxError(
                        "a range [..] applies only to a metric selector (use [range:step] for a subquery)",
                        tok.pos,
                    )
                expr = MatrixSelector(expr, rng, tok.pos)
            elif self.at_word("offset"):
                self.next()
                neg = self.peek().kind is Tok.OP and self.peek().text == "-"
                if neg:
                    self.next()
                off = ("-" if neg else "") + self.duration("offset")
                if isinstance(expr, VectorSelector | MatrixSelector | Subquery) and expr.offset is None:
                    expr = _with_offset(expr, off)
                else:
                    raise PromQLSyntaxError("offset applies once, to a selector or subquery", tok.pos)
            elif tok.kind is Tok.AT:
                self.next()
                at = self.next()
                if at.kind is Tok.IDENT and at.text in ("start", "end"):
                    self.expect(Tok.LPAREN)
                    self.expect(Tok.RPAREN)
                elif at.kind not in (Tok.NUMBER, Tok.VARIABLE):
                    raise PromQLSyntaxError("@ needs a unix timestamp, start() or end()", at.pos)
                if not isinstance(expr, VectorSelector | MatrixSelector | Subquery):
                    raise PromQLSyntaxError("@ applies to a selector or subquery", tok.pos)
            else:
                return expr

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind in (Tok.NUMBER, Tok.VARIABLE):
            self.next()
            return NumberLiteral(tok.text, tok.pos)
        if tok.kind is Tok.STRING:
            self.next()
            return StringLiteral(tok.text, tok.pos)
        if tok.kind is Tok.LPAREN:
            self.next()
            inner = self.expression(0)
            self.expect(Tok.RPAREN, "')'")
            return Paren(inner, tok.pos)
        if tok.kind is Tok.LBRACE:
            return VectorSelector(None, self.matchers(), tok.pos)
        if tok.kind is Tok.IDENT:
            nxt = self.peek(1)
            if tok.text in AGGREGATIONS and (
                nxt.kind is Tok.LPAREN or (nxt.kind is Tok.IDENT and nxt.text in ("by", "without"))
            ):
                return self.aggregation()
            if tok.text in _KEYWORDS or tok.text in ("and", "or", "unless", "atan2"):
                raise PromQLSyntaxError(f"unexpected keyword {tok.text!r}", tok.pos)
            if nxt.kind is Tok.LPAREN:
                return self.call()
            self.next()
            matchers = self.matchers() if self.peek().kind is Tok.LBRACE else ()
            return VectorSelector(tok.text, matchers, tok.pos)
        raise PromQLSyntaxError(f"unexpected {tok.text or tok.kind.value!r}", tok.pos)

    def matchers(self) -> tuple[Matcher, ...]:
        self.expect(Tok.LBRACE)
        out: list[Matcher] = []
        while self.peek().kind is not Tok.RBRACE:
            name = self.expect(Tok.IDENT, "a label name")
            if not _LABEL_RE.fullmatch(name.text):
                raise PromQLSyntaxError(f"{name.text!r} is not a valid label name", name.pos)
            op = self.next()
            if op.kind is not Tok.OP or op.text not in ("=", "!=", "=~", "!~"):
                raise PromQLSyntaxError(f"expected =, !=, =~ or !~ after label {name.text!r}", op.pos)
            value = self.expect(Tok.STRING, "a quoted label value")
            out.append(Matcher(name.text, op.text, value.text, name.pos))
            if self.peek().kind is Tok.COMMA:
                self.next()
            elif self.peek().kind is not Tok.RBRACE:
                raise PromQLSyntaxError("expected ',' or '}' in label matchers", self.peek().pos)
        self.next()
        return tuple(out)

    def call(self) -> Call:
        name = self.next()
        self.expect(Tok.LPAREN)
        args: list[Expr] = []
        while self.peek().kind is not Tok.RPAREN:
            args.append(self.expression(0))
            if self.peek().kind is Tok.COMMA:
                self.next()
            elif self.peek().kind is not Tok.RPAREN:
                raise PromQLSyntaxError(f"expected ',' or ')' in arguments of {name.text}()", self.peek().pos)
        self.next()
        return Call(name.text, tuple(args), name.pos)

    def aggregation(self) -> Aggregation:
        op = self.next()
        grouping: tuple[str, ...] = ()
        without = has_grouping = False
        if self.at_word("by", "without"):
            without = self.next().text == "without"
            grouping, has_grouping = self.label_list(), True
        self.expect(Tok.LPAREN, f"'(' after {op.text}")
        param: Expr | None = None
        if op.text in _PARAM_AGGREGATIONS:
            param = self.expression(0)
            self.expect(Tok.COMMA, f"',' after the parameter of {op.text}")
        inner = self.expression(0)
        self.expect(Tok.RPAREN, f"')' closing {op.text}(...)")
        if self.at_word("by", "without"):
            if has_grouping:
                raise PromQLSyntaxError("grouping given twice", self.peek().pos)
            without = self.next().text == "without"
            grouping, has_grouping = self.label_list(), True
        return Aggregation(op.text, inner, param, grouping, without, has_grouping, op.pos)


def _with_offset(expr: VectorSelector | MatrixSelector | Subquery, off: str) -> Expr:
    if isinstance(expr, VectorSelector):
        return VectorSelector(expr.name, expr.matchers, expr.pos, off)
    if isinstance(expr, MatrixSelector):
        return MatrixSelector(expr.selector, expr.range, expr.pos, off)
    return Subquery(expr.expr, expr.range, expr.step, expr.pos, off)


def parse(text: str) -> Expr:
    """Parse a PromQL expression; raises :class:`PromQLSyntaxError` with the offending offset."""
    return _Parser(text).parse()


# ---- extraction --------------------------------------------------------------------------------


def children(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, MatrixSelector):
        return (expr.selector,)
    if isinstance(expr, Subquery | Paren | Unary):
        return (expr.expr,)
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, Aggregation):
        return (expr.expr,) if expr.param is None else (expr.param, expr.expr)
    if isinstance(expr, Binary):
        return (expr.lhs, expr.rhs)
    return ()


def walk(expr: Expr) -> Iterator[Expr]:
    yield expr
    for child in children(expr):
        yield from walk(child)


def selectors(expr: Expr) -> list[VectorSelector]:
    """Every metric selector in ``expr``, left to right."""
    return [node for node in walk(expr) if isinstance(node, VectorSelector)]


def metric_names(expr: Expr) -> set[str]:
    return {name for sel in selectors(expr) if (name := sel.metric) is not None}


def label_names(expr: Expr) -> set[str]:
    """Every label name the expression refers to: matchers, groupings, matchings, label_* sources."""
    out: set[str] = set()
    for node in walk(expr):
        if isinstance(node, VectorSelector):
            out.update(m.label for m in node.matchers if m.label != "__name__")
        elif isinstance(node, Aggregation):
            out.update(node.grouping)
        elif isinstance(node, Binary) and node.matching is not None:
            out.update(node.matching.labels)
            out.update(node.matching.include)
        elif isinstance(node, Call) and node.func in ("label_replace", "label_join"):
            # label_replace(v, dst, replacement, src, regex); label_join(v, dst, separator, src...)
            named = node.args[1:2] + (node.args[3:4] if node.func == "label_replace" else node.args[3:])
            out.update(a.value for a in named if isinstance(a, StringLiteral) and a.value)
    return out


# ---- type and label inference ------------------------------------------------------------------


class VType(Enum):
    SCALAR = "scalar"
    VECTOR = "instant vector"
    MATRIX = "range vector"
    STRING = "string"


Labels = frozenset[str] | None  # None: unknown (an error was already reported upstream)


@dataclass(frozen=True)
class Typed:
    type: VType
    labels: Labels = None


S, V, M, STR = VType.SCALAR, VType.VECTOR, VType.MATRIX, VType.STRING


@dataclass(frozen=True)
class _Func:
    args: tuple[VType, ...]
    returns: VType
    optional: int = 0  # how many trailing args may be left out
    variadic: bool = False  # the last arg type repeats
    labels_from: int | None = 0  # the output carries this argument's labels; None: no labels


def _funcs() -> dict[str, _Func]:
    table: dict[str, _Func] = {}
    for name in (
        "abs", "ceil", "exp", "floor", "ln", "log10", "log2", "sgn", "sqrt", "sort", "sort_desc", "timestamp",
        "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg",
        "rad", "histogram_count", "histogram_sum",
    ):  # fmt: skip
        table[name] = _Func((V,), V)
    for name in (
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "hour",
        "minute",
        "month",
        "year",
    ):
        table[name] = _Func((V,), V, optional=1)
    for name in (
        "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "avg_over_time",
        "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "stddev_over_time",
        "stdvar_over_time", "last_over_time", "present_over_time",
    ):  # fmt: skip
        table[name] = _Func((M,), V)
    table["quantile_over_time"] = _Func((S, M), V, labels_from=1)
    table["predict_linear"] = _Func((M, S), V)
    table["holt_winters"] = _Func((M, S, S), V)
    table["clamp"] = _Func((V, S, S), V)
    table["clamp_max"] = _Func((V, S), V)
    table["clamp_min"] = _Func((V, S), V)
    table["round"] = _Func((V, S), V, optional=1)
    table["histogram_quantile"] = _Func((S, V), V, labels_from=1)
    table["histogram_fraction"] = _Func((S, S, V), V, labels_from=2)
    table["label_replace"] = _Func((V, STR, STR, STR, STR), V)
    table["label_join"] = _Func((V, STR, STR, STR), V, variadic=True)
    table["absent"] = _Func((V,), V)
    table["absent_over_time"] = _Func((M,), V)
    table["scalar"] = _Func((V,), S, labels_from=None)
    table["vector"] = _Func((S,), V, labels_from=None)
    table["time"] = _Func((), S, labels_from=None)
    table["pi"] = _Func((), S, labels_from=None)
    return table


FUNCTIONS: Mapping[str, _Func] = _funcs()
_COUNTER_FUNCS = frozenset({"rate", "irate", "increase", "resets"})


def _fmt(labels: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(labels)) + "}" if labels else "{} (no labels)"


@dataclass
class _Checker:
    text: str
    catalog: Catalog
    recorded: Mapping[str, frozenset[str]]
    problems: list[LintProblem] = field(default_factory=list)

    def problem(self, pos: int, message: str) -> None:
        self.problems.append(LintProblem(self.text, pos, message))

    def known_series(self) -> list[str]:
        return [s for spec in self.catalog.metrics for s in spec.series_names()] + list(self.recorded)

    def series_labels(self, name: str, pos: int) -> Labels:
        if name in self.recorded:
            return self.recorded[name]
        if self.catalog.spec_for_series(name) is not None:
            return self.catalog.allowed_labels(name)
        close = difflib.get_close_matches(name, self.known_series(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.problem(pos, f"unknown metric {name!r}: not in the metric catalog nor a recording rule{hint}")
        return None

    def check_labels(self, wanted: tuple[str, ...] | list[str], have: Labels, pos: int, where: str) -> None:
        if have is None:
            return
        for label in wanted:
            if label not in have:
                close = difflib.get_close_matches(label, sorted(have), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.problem(
                    pos,
                    f"label {label!r} in {where} is not available here: the operand has {_fmt(have)}{hint}",
                )

    def expect(self, got: Typed, want: VType, pos: int, what: str) -> None:
        if got.type is not want:
            self.problem(pos, f"{what} expects {want.value}, got {got.type.value}")

    # --- node kinds
    def check(self, expr: Expr) -> Typed:
        if isinstance(expr, NumberLiteral):
            return Typed(S)
        if isinstance(expr, StringLiteral):
            return Typed(STR)
        if isinstance(expr, Paren):
            return self.check(expr.expr)
        if isinstance(expr, VectorSelector):
            return Typed(V, self.selector(expr))
        if isinstance(expr, MatrixSelector):
            return Typed(M, self.selector(expr.selector))
        if isinstance(expr, Subquery):
            inner = self.check(expr.expr)
            self.expect(inner, V, expr.pos, "a subquery")
            return Typed(M, inner.labels)
        if isinstance(expr, Unary):
            inner = self.check(expr.expr)
            if inner.type not in (S, V):
                self.problem(
                    expr.pos, f"unary {expr.op} needs a scalar or instant vector, got {inner.type.value}"
                )
            return inner
        if isinstance(expr, Call):
            return self.call(expr)
        if isinstance(expr, Aggregation):
            return self.aggregation(expr)
        return self.binary(expr)

    def selector(self, sel: VectorSelector) -> Labels:
        name = sel.metric
        if name is None:
            self.problem(sel.pos, "selector has no metric name: every query must name a catalog metric")
            return None
        have = self.series_labels(name, sel.pos)
        if have is not None:
            for m in sel.matchers:
                if m.label != "__name__" and m.label not in have:
                    close = difflib.get_close_matches(m.label, sorted(have), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.problem(
                        m.pos, f"label {m.label!r} is not a label of {name!r}, which has {_fmt(have)}{hint}"
                    )
        return have

    def call(self, call: Call) -> Typed:
        spec = FUNCTIONS.get(call.func)
        if spec is None:
            close = difflib.get_close_matches(call.func, list(FUNCTIONS), n=1)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            self.problem(call.pos, f"unknown function {call.func}(){hint}")
            for arg in call.args:
                self.check(arg)
            return Typed(V)
        typed = [self.check(a) for a in call.args]
        if call.func in _COUNTER_FUNCS and call.args:
            self.counter_only(call)
        lo, hi = len(spec.args) - spec.optional, len(spec.args)
        if spec.variadic:
            hi = 10_000
        if not lo <= len(typed) <= hi:
            want = f"{lo}" if lo == hi else f"{lo}+" if spec.variadic else f"{lo} to {hi}"
            self.problem(call.pos, f"{call.func}() takes {want} arguments, got {len(typed)}")
        for idx, got in enumerate(typed):
            want_type = spec.args[min(idx, len(spec.args) - 1)]
            self.expect(got, want_type, call.args[idx].pos, f"argument {idx + 1} of {call.func}()")
        labels: Labels = frozenset()
        if spec.labels_from is not None:
            labels = typed[spec.labels_from].labels if spec.labels_from < len(typed) else frozenset()
        if call.func == "histogram_quantile" and len(typed) == 2 and labels is not None:
            if "le" not in labels:
                self.problem(
                    call.pos, f"histogram_quantile() needs the 'le' label, but its input has {_fmt(labels)}"
                )
            labels = labels - {"le"}
        elif call.func in ("label_replace", "label_join") and len(call.args) >= 3:
            labels = self.label_func(call, labels)
        elif call.func in ("absent", "absent_over_time") and typed:
            labels = self.absent_labels(call.args[0])
        return Typed(spec.returns, labels)

    def counter_only(self, call: Call) -> None:
        """rate() and friends assume a monotonic counter; over a gauge they invent resets."""
        arg = call.args[0]
        name = arg.selector.metric if isinstance(arg, MatrixSelector) else None
        spec = self.catalog.spec_for_series(name) if name is not None else None
        if spec is None:
            return  # unknown metrics and recorded series are reported (or trusted) elsewhere
        counter = spec.type is MetricType.COUNTER or (spec.type is MetricType.HISTOGRAM and name != spec.name)
        if not counter:
            self.problem(
                call.pos,
                f"{call.func}() of {name!r}, a {spec.type.value}: use deriv()/delta() or the gauge itself",
            )

    def label_func(self, call: Call, labels: Labels) -> Labels:
        strings = [a.value if isinstance(a, StringLiteral) else None for a in call.args]
        dst = strings[1]
        sources = strings[3:4] if call.func == "label_replace" else strings[3:]
        if dst is not None and not _LABEL_RE.fullmatch(dst):
            self.problem(call.args[1].pos, f"{dst!r} is not a valid label name")
        for src in sources:
            if src:  # the empty source label is legal and means "no source"
                self.check_labels([src], labels, call.pos, f"{call.func}() source")
        if labels is None or dst is None:
            return labels
        return labels | {dst}

    def absent_labels(self, arg: Expr) -> frozenset[str]:
        """absent() returns 1 with the labels of the selector's equality matchers."""
        sel = arg.selector if isinstance(arg, MatrixSelector) else arg
        if isinstance(sel, VectorSelector):
            return frozenset(m.label for m in sel.matchers if m.op == "=" and m.label != "__name__")
        return frozenset()

    def aggregation(self, agg: Aggregation) -> Typed:
        inner = self.check(agg.expr)
        self.expect(inner, V, agg.expr.pos, f"{agg.op}()")
        if agg.param is not None:
            param = self.check(agg.param)
            self.expect(
                param, STR if agg.op == "count_values" else S, agg.param.pos, f"the parameter of {agg.op}()"
            )
        clause = "without" if agg.without else "by"
        self.check_labels(agg.grouping, inner.labels, agg.pos, f"{agg.op} {clause} (...)")
        if inner.labels is None:
            return Typed(V, None)
        if agg.op in ("topk", "bottomk"):  # these return the selected input series unchanged
            return Typed(V, inner.labels)
        out = inner.labels - set(agg.grouping) if agg.without else frozenset(agg.grouping)
        if agg.op == "count_values" and isinstance(agg.param, StringLiteral):
            out = out | {agg.param.value}
        return Typed(V, out)

    def binary(self, b: Binary) -> Typed:
        lhs, rhs = self.check(b.lhs), self.check(b.rhs)
        for side in (lhs, rhs):
            if side.type not in (S, V):
                self.problem(
                    b.pos, f"operator {b.op} needs scalars or instant vectors, got {side.type.value}"
                )
                return Typed(V, None)
        if b.op in _SET_OPS and (lhs.type is S or rhs.type is S):
            self.problem(b.pos, f"set operator {b.op} needs instant vectors on both sides")
        if lhs.type is S and rhs.type is S:
            if b.op in _COMPARISONS and not b.return_bool:
                self.problem(b.pos, "comparisons between scalars need the bool modifier")
            return Typed(S)
        if lhs.type is S or rhs.type is S:
            if b.matching is not None:
                self.problem(b.pos, "on/ignoring only applies between two instant vectors")
            return Typed(V, rhs.labels if lhs.type is S else lhs.labels)
        return Typed(V, self.vector_match(b, lhs.labels, rhs.labels))

    def vector_match(self, b: Binary, lhs: Labels, rhs: Labels) -> Labels:
        m = b.matching
        if m is None:
            # Without on/ignoring the two sides must carry the same label set, else nothing ever matches
            # ('or' is a union and needs no match).
            if lhs is not None and rhs is not None and lhs != rhs and b.op != "or":
                self.problem(
                    b.pos,
                    f"operands of {b.op} never match: left has {_fmt(lhs)}, right has {_fmt(rhs)}; "
                    "add on(...) or ignoring(...)",
                )
            if lhs is None or rhs is None:
                return None
            return lhs | rhs if b.op == "or" else lhs
        clause = "on" if m.on else "ignoring"
        if m.on:
            self.check_labels(m.labels, lhs, b.pos, f"{clause}(...) (left side)")
            self.check_labels(m.labels, rhs, b.pos, f"{clause}(...) (right side)")
        elif lhs is not None and rhs is not None:
            self.check_labels(m.labels, lhs | rhs, b.pos, f"{clause}(...)")
        if m.card == "group_left":
            self.check_labels(m.include, rhs, b.pos, "group_left(...) (taken from the right side)")
        elif m.card == "group_right":
            self.check_labels(m.include, lhs, b.pos, "group_right(...) (taken from the left side)")
        if lhs is None or rhs is None:
            return None
        if b.op == "or":
            return lhs | rhs
        if b.op in _SET_OPS:
            return lhs
        if m.card == "one-to-one":
            return frozenset(m.labels) & lhs if m.on else lhs - set(m.labels)
        if m.card == "group_left":
            return lhs | set(m.include)
        return rhs | set(m.include)


# ---- the public entry points --------------------------------------------------------------------


def infer(
    text: str, catalog: Catalog = CATALOG, recorded: Mapping[str, frozenset[str]] | None = None
) -> tuple[Typed | None, list[LintProblem]]:
    """Type and label set of ``text``, with every problem found (a syntax error is one problem)."""
    try:
        tree = parse(text)
    except PromQLSyntaxError as exc:
        return None, [LintProblem(text, exc.pos, f"syntax error: {exc.message}")]
    checker = _Checker(text, catalog, recorded or {})
    return checker.check(tree), checker.problems


def lint(
    text: str,
    catalog: Catalog = CATALOG,
    recorded: Mapping[str, frozenset[str]] | None = None,
    *,
    want: VType | None = None,
) -> list[LintProblem]:
    """Every problem in ``text``; an empty list means it lints clean.

    ``recorded`` maps recording-rule names to their output label sets. ``want`` is the value type
    the caller needs (rules and panels need an instant vector, or a scalar for some panels).
    """
    typed, problems = infer(text, catalog, recorded)
    if typed is not None and want is not None and typed.type is not want:
        problems.append(LintProblem(text, 0, f"expression is a {typed.type.value}, expected {want.value}"))
    return problems


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the linter needs it: recording rules name their output, alerting rules do not."""

    expr: str
    record: str | None = None
    labels: tuple[str, ...] = ()  # label names the rule adds


def lint_rules(
    rules: list[RuleSpec], catalog: Catalog = CATALOG
) -> tuple[list[LintProblem], dict[str, frozenset[str]]]:
    """Lint rules in order; each recording rule becomes a known series for the rules after it.

    Returns the problems and the recorded series with their label sets (for linting dashboards).
    """
    recorded: dict[str, frozenset[str]] = {}
    problems: list[LintProblem] = []
    for rule in rules:
        typed, found = infer(rule.expr, catalog, recorded)
        problems.extend(found)
        if typed is not None and typed.type is not V:
            problems.append(
                LintProblem(rule.expr, 0, f"a rule must be an instant vector, got {typed.type.value}")
            )
        if rule.record is not None:
            if rule.record in recorded or catalog.spec_for_series(rule.record) is not None:
                problems.append(LintProblem(rule.expr, 0, f"series {rule.record!r} is defined twice"))
            labels = typed.labels if typed is not None and typed.labels is not None else frozenset()
            recorded[rule.record] = labels | set(rule.labels)
    return problems, recorded


_LABEL_VALUES_RE = re.compile(
    r"^\s*label_values\(\s*(?:(?P<sel>.*),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$"
)


def lint_label_values(
    query: str, catalog: Catalog = CATALOG, recorded: Mapping[str, frozenset[str]] | None = None
) -> list[LintProblem]:
    """Lint a Grafana ``label_values([selector,] label)`` template-variable query."""
    m = _LABEL_VALUES_RE.match(query)
    if m is None:
        return [LintProblem(query, 0, "expected label_values([selector,] label)")]
    label, sel = m.group("label"), m.group("sel")
    if sel is None:  # label_values(label): any series; the label must exist somewhere
        every = {
            lbl for spec in catalog.metrics for s in spec.series_names() for lbl in catalog.allowed_labels(s)
        }
        if label not in every:
            return [LintProblem(query, m.start("label"), f"no catalog metric has the label {label!r}")]
        return []
    offset = m.start("sel")
    typed, problems = infer(sel, catalog, recorded)
    out = [LintProblem(query, p.pos + offset, p.message) for p in problems]
    if typed is not None and typed.labels is not None and label not in typed.labels:
        msg = f"label {label!r} is not a label of {sel.strip()!r}, which has {_fmt(typed.labels)}"
        out.append(LintProblem(query, m.start("label"), msg))
    return out


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace Grafana ``$name`` / ``${name}`` / ``${name:fmt}`` variables (for running a query)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for template variable ${name}")
        return values[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\}|\$([A-Za-z0-9_]+)", repl, text)
