"""Read an mmengine-style Python config without running it.

`read_config` parses the file with `ast`, checks the whole file against a data-only subset of
Python, then evaluates it: assignments of literals, names bound earlier in the file,
`dict()`/`list()`/`tuple()` calls, `.copy()`, arithmetic, comparisons, f-strings, `%` formatting
and subscripts. Anything else (imports, other calls, attribute access outside `_base_`, lambdas,
comprehensions, loops...) raises `UnsafeConfigError` before any value is computed, and sizes are
bounded so that a small file cannot build a huge value.

Inheritance follows mmengine 0.10 (`Config._file2dict`): the `_base_` files are read the same way
and merged in order, then the file's own values are merged over them (dicts key by key unless
they hold `_delete_=True`). As in mmengine, inherited values are reached through `_base_` only
(`_base_.model`, `_base_['model']`, `{{_base_.model}}`), not as bare names.
"""

import ast
import builtins
import errno
import itertools
import operator
import os
import re

__all__ = ["UnsafeConfigError", "read_config"]

_MAX_LEN = 10**6  # items or characters in one value
_MAX_INT_BITS = 10_000
_MAX_EXPONENT = 64
_MAX_DEPTH = 100  # nesting of values
_MAX_FILES = 100  # config files read for one config, bases included
_BUDGET = 10**7  # items and characters built while reading one config, bases included
_TEXT_PER_ITEM = 32  # bound on the characters that str() or repr() writes per item or character
_HINT = "pass --trust-config to run the file through mmengine (only for files you trust)"

_CALLABLE = {"dict": dict, "list": list, "tuple": tuple}
_CONSTANTS = (str, bytes, int, float, complex, type(None))
_SIZED = (str, bytes, list, tuple, dict, set)
_SEQUENCES = (str, bytes, list, tuple)
_EXPRESSIONS = (ast.Constant, ast.Name, ast.Dict, ast.Attribute, ast.Subscript, ast.Slice,
                ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.JoinedStr,
                ast.FormattedValue)
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_INPLACE = {ast.Add: operator.iadd, ast.Sub: operator.isub, ast.Mult: operator.imul,
            ast.Div: operator.itruediv, ast.FloorDiv: operator.ifloordiv, ast.Mod: operator.imod,
            ast.Pow: operator.ipow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Is: operator.is_, ast.IsNot: operator.is_not,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_CONVERSIONS = {-1: None, ord("s"): str, ord("r"): repr, ord("a"): ascii}
_ERRORS = (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError,
           RecursionError)

# mmengine's text placeholders: file-name variables (substituted, as mmengine does),
# environment variables (refused: a config must not read the environment) and base values.
_PREDEFINED = re.compile(r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)"
                         r"\s*\}\}")
_ENV_PLACEHOLDER = re.compile(r"\{\{['\"]?\s*\$\w+\s*:")
_BASE_PLACEHOLDER = re.compile(r"\{\{\s*_base_\.([\w.]+)\s*\}\}")
_FORMAT_SPEC = re.compile(r"[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?")


class UnsafeConfigError(ValueError):
    """A construct the safe reader refuses.

    Attributes: `path` (str), `line` (int or None) and `problem` (str). The message is one line
    and says how to read the file anyway when it is trusted.
    """

    def __init__(self, path, line, problem):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{_where(path, line)}: {problem}; {_HINT}")


def read_config(path):
    """The config's top-level names (after `_base_` inheritance) as plain Python data.

    Equal to mmengine's `Config.fromfile(path).to_dict()` for the configs this reader accepts.
    Raises `UnsafeConfigError` for a construct outside the data-only subset, `FileNotFoundError`
    for a missing file or base file, `SyntaxError` for invalid Python (in the file or a base)
    and `ValueError` for a config that cannot be evaluated (undefined name, missing key...).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "config file not found", path)
    return _tree_copy(_Reader().read(path, ()))


def _where(path, line):
    return str(path) if line is None else f"{path}, line {line}"


def _snippet(node):
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 60 else text[:57] + "..."


def _root(node):
    """Name at the root of an attribute/subscript chain such as `_base_.a['b'].c`, else None."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_base_assignment(stmt):
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "_base_")


def _is_read_base(node):
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "read_base")


def _placeholder(node):
    """The `_base_.a.b` of an unquoted `{{_base_.a.b}}` (a set of a set to Python), else None."""
    if (isinstance(node, ast.Set) and len(node.elts) == 1 and isinstance(node.elts[0], ast.Set)
            and len(node.elts[0].elts) == 1):
        inner = node.elts[0].elts[0]
        chain = inner
        while isinstance(chain, ast.Attribute):
            chain = chain.value
        if inner is not chain and isinstance(chain, ast.Name) and chain.id == "_base_":
            return inner
    return None


def _tree_copy(value):
    """`value` with its dicts, lists and tuples copied (shared parts copied each time)."""
    if isinstance(value, dict):
        return {k: _tree_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_tree_copy(v) for v in value)
    return value


def _merge(child, base, where):
    """`child` merged over `base` as mmengine's `_merge_a_into_b` does.

    A dict merges into the base dict of the same key unless it holds `_delete_=True`; the
    `_delete_` key is popped (in place, as mmengine does) only where the base has that key.
    """
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and key in out and not value.pop("_delete_", False):
            if not isinstance(out[key], dict):
                raise ValueError(f"{where}: `{key}` is a dict here but a "
                                 f"{type(out[key]).__name__} in the base config; add "
                                 f"`_delete_=True` to replace it")
            out[key] = _merge(value, out[key], where)
        else:
            out[key] = value
    return out


class _Reader:
    """What one `read_config` call shares among a config and its bases: the size budget."""

    def __init__(self):
        self.budget = _BUDGET
        self.files = 0

    def read(self, path, chain):
        """Merged values of the config at `path` (absolute); `chain`: real paths inheriting it."""
        self.files += 1
        if self.files > _MAX_FILES:
            raise UnsafeConfigError(path, None, f"more than {_MAX_FILES} config files in its "
                                                "`_base_` tree")
        if not path.endswith(".py"):
            raise UnsafeConfigError(path, None, "only Python (.py) configs can be read safely")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        variables = dict(fileDirname=os.path.dirname(path), fileBasename=os.path.basename(path),
                         fileBasenameNoExtension=os.path.splitext(os.path.basename(path))[0],
                         fileExtname=os.path.splitext(path)[1])
        text = _PREDEFINED.sub(lambda m: variables[m[1]].replace("\\", "/"), text)
        env = _ENV_PLACEHOLDER.search(text)
        if env:
            raise UnsafeConfigError(path, text.count("\n", 0, env.start()) + 1,
                                    "environment-variable placeholders ({{$NAME:default}}) "
                                    "are not read")
        try:
            tree = ast.parse(text, filename=path)
            return _File(path, self, chain + (os.path.realpath(path),)).run(tree)
        except RecursionError:
            raise UnsafeConfigError(path, None, "expressions nested too deeply") from None


class _File:
    """One config file: checked, then evaluated statement by statement."""

    def __init__(self, path, reader, chain):
        self.path, self.reader, self.chain = path, reader, chain
        self.names = {}  # the file's own top-level names
        self.lines = {}  # name (or `_base_`) -> statement that last changed it
        self.base = {}  # merged values of the `_base_` files

    def refuse(self, node, problem):
        raise UnsafeConfigError(self.path, getattr(node, "lineno", None), problem)

    def broken(self, node, problem):
        raise ValueError(f"{_where(self.path, getattr(node, 'lineno', None))}: {problem}")

    def run(self, tree):
        for stmt in tree.body:  # refused before its `from mmengine.config import read_base`
            if isinstance(stmt, ast.With) and any(_is_read_base(w.context_expr)
                                                  for w in stmt.items):
                self.refuse(stmt, "`with read_base():` marks a new-style (lazy-import) config, "
                                  "which imports its bases as modules; only `_base_ = [...]` "
                                  "inheritance can be read safely")
        base_stmt = None
        for stmt in tree.body:
            self.check_statement(stmt)
            if _is_base_assignment(stmt):
                if base_stmt is not None:
                    self.refuse(stmt, "`_base_` is assigned twice")
                base_stmt = stmt
        if base_stmt is not None:
            self.base = self.read_bases(base_stmt)
        for stmt in tree.body:
            if stmt is not base_stmt:
                self.execute(stmt)
        own = {k: v for k, v in self.names.items() if not k.startswith("__")}
        # Copying expands shared parts: bound the expanded size first, of the base values too
        # (the file may have changed them through `_base_`).
        for name, value in itertools.chain(own.items(), self.base.items()):
            stmt = self.lines.get(name if name in own else "_base_")
            size = self.size(value, stmt)
            if size > _MAX_LEN:
                self.refuse(stmt, f"`{name}` holds more than {_MAX_LEN} items and characters")
            self.charge(size, stmt)
        own.pop("_deprecation_", None)  # mmengine turns it into a warning
        # mmengine copies the file's values part by part before merging, so no dict is shared
        # and popping `_delete_` from one leaves the others as written.
        return _merge(_tree_copy(own), self.base, self.path)

    def read_bases(self, stmt):
        paths = self.ev(stmt.value)
        paths = [paths] if isinstance(paths, str) else paths
        if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
            self.broken(stmt, "`_base_` must be a path or a list of paths")
        merged, origin = {}, {}
        for name in paths:
            if "::" in name:
                self.refuse(stmt, f"base `{name}` is in another package; only paths relative "
                                  "to the config are read")
            path = os.path.abspath(os.path.join(os.path.dirname(self.path), name))
            if not os.path.isfile(path):
                raise FileNotFoundError(errno.ENOENT, f"{_where(self.path, stmt.lineno)}: "
                                                      "base config not found", path)
            if os.path.realpath(path) in self.chain:
                cycle = [os.path.basename(p) for p in self.chain + (path,)]
                self.refuse(stmt, "`_base_` cycle: " + " -> ".join(cycle))
            values = self.reader.read(path, self.chain)
            duplicate = sorted(merged.keys() & values.keys())
            if duplicate:
                raise ValueError(f"{_where(self.path, stmt.lineno)}: duplicate key among bases "
                                 f"(mmengine refuses it): {duplicate} in both "
                                 f"{origin[duplicate[0]]} and {name}")
            origin.update(dict.fromkeys(values, name))
            merged.update(_tree_copy(values))  # each base value is a fresh object, as in mmengine
        return merged

    # Static check: the whole file, before anything is evaluated.

    def check_statement(self, stmt):
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                self.check_target(target, base_ok=len(stmt.targets) == 1)
            self.check(stmt.value)
        elif isinstance(stmt, ast.AugAssign):
            if not isinstance(stmt.target, ast.Name):
                self.refuse(stmt, "augmented assignment (`+=`...) is allowed only to a name")
            self.check_target(stmt.target, base_ok=False)
            self.check_operator(stmt, stmt.op)
            self.check(stmt.value)
        elif (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
              and isinstance(stmt.value.value, str)):
            pass  # a docstring
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.refuse(stmt, f"`{_snippet(stmt)}`: imports are not allowed")
        else:
            self.refuse(stmt, f"`{_snippet(stmt)}`: a config may hold only assignments and "
                              "docstrings")

    def check_target(self, target, base_ok):
        if isinstance(target, ast.Name):
            if target.id == "_base_" and not base_ok:
                self.refuse(target, "`_base_` may only be assigned on its own: `_base_ = [...]`")
            if target.id in _CALLABLE:
                self.refuse(target, f"`{target.id}` cannot be rebound")
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self.check_target(elt, base_ok=False)
        elif isinstance(target, ast.Subscript):
            self.check(target.value)
            self.check(target.slice)
        elif isinstance(target, ast.Starred):
            self.refuse(target, "starred assignment is not allowed")
        else:
            self.refuse(target, f"assignment to `{_snippet(target)}` is not allowed")

    def check_operator(self, node, op):
        if type(op) not in _BINARY and type(op) not in _UNARY:
            self.refuse(node, f"`{_snippet(node)}`: operator {type(op).__name__} is not allowed")

    def check(self, node):
        """Refuse any construct in expression `node` outside the data-only subset."""
        if isinstance(node, ast.Call):
            return self.check_call(node)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for elt in node.elts:
                self.check(elt.value if isinstance(elt, ast.Starred) else elt)
            return None
        if isinstance(node, ast.Attribute) and _root(node) != "_base_":
            self.refuse(node, f"attribute access `{_snippet(node)}` is not allowed (only "
                              "`_base_.name`)")
        if not isinstance(node, _EXPRESSIONS):
            self.refuse(node, f"`{_snippet(node)}` ({type(node).__name__}) is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANTS):
            self.refuse(node, f"the constant `{_snippet(node)}` is not allowed")
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            self.check_operator(node, node.op)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.check(child)
        return None

    def check_call(self, node):
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CALLABLE:
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    self.refuse(arg, f"`{_snippet(arg)}`: `*` unpacking in a call is not allowed")
                self.check(arg)
            for keyword in node.keywords:
                self.check(keyword.value)
        elif (isinstance(func, ast.Attribute) and func.attr == "copy" and not node.args
              and not node.keywords):
            self.check(func.value)
        else:
            self.refuse(node, f"the call `{_snippet(node)}` is not allowed (only dict(), list(), "
                              "tuple() and .copy())")

    # Evaluation.

    def execute(self, stmt):
        if isinstance(stmt, ast.Assign):
            value = self.ev(stmt.value)
            for target in stmt.targets:
                self.assign(target, value, stmt)
        elif isinstance(stmt, ast.AugAssign):
            name = stmt.target.id
            if name not in self.names:
                self.broken(stmt, f"`{name}` is not defined before `{_snippet(stmt)}`")
            value = self.ev(stmt.value)
            self.names[name] = self.binop(stmt, stmt.op, self.names[name], value, inplace=True)
            self.lines[name] = stmt

    def assign(self, target, value, stmt):
        if isinstance(target, ast.Name):
            self.names[target.id], self.lines[target.id] = value, stmt
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, _SIZED):
                self.broken(target, f"cannot unpack a {type(value).__name__}")
            if len(value) != len(target.elts):
                self.broken(target, f"cannot unpack {len(value)} values into "
                                    f"{len(target.elts)} targets")
            for elt, item in zip(target.elts, value):
                self.assign(elt, item, stmt)
        else:  # a subscript
            container, key = self.ev(target.value), self.ev(target.slice)
            if not isinstance(container, (dict, list)):
                self.broken(target, f"cannot assign into a {type(container).__name__}")
            self.attempt(target, operator.setitem, container, key, value)
            self.checked(container, target)
            if _root(target):
                self.lines[_root(target)] = stmt  # the last change, for errors found later

    def ev(self, node):
        return getattr(self, "ev_" + type(node).__name__)(node)

    def ev_Constant(self, node):
        value = node.value
        if isinstance(value, str) and "{{" in value:
            match = _BASE_PLACEHOLDER.fullmatch(value)
            if match:  # mmengine substitutes the quoted form as text too
                return self.base_value(match[1].split("."), node)
            if _BASE_PLACEHOLDER.search(value):
                self.broken(node, "a `{{_base_.name}}` placeholder must be the whole value, not "
                                  "part of a string")
        return self.checked(value, node) if isinstance(value, int) else value

    def ev_Name(self, node):
        if node.id in self.names:
            return self.names[node.id]
        if node.id == "_base_":
            return self.base
        if hasattr(builtins, node.id):
            self.refuse(node, f"`{node.id}` is not available in a config")
        hint = f" (inherited values are read as `_base_.{node.id}`)" if node.id in self.base else ""
        return self.broken(node, f"name `{node.id}` is not defined{hint}")

    def ev_Attribute(self, node):  # only under `_base_` (checked): a key of a base dict
        value = self.ev(node.value)
        if not isinstance(value, dict) or node.attr not in value:
            self.broken(node, f"`{_snippet(node)}` is not defined in the base configs")
        return value[node.attr]

    def base_value(self, keys, node):
        value = self.base
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                self.broken(node, f"`_base_.{'.'.join(keys)}` is not defined in the base configs")
            value = value[key]
        return value

    def ev_Subscript(self, node):
        value, key = self.ev(node.value), self.ev(node.slice)
        if not isinstance(value, (dict, *_SEQUENCES)):
            self.broken(node, f"cannot subscript a {type(value).__name__}")
        item = self.attempt(node, operator.getitem, value, key)
        return self.checked(item, node) if isinstance(key, slice) else item

    def ev_Slice(self, node):
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else self.ev(part) for part in parts))

    def ev_List(self, node):
        return self.checked(self.items(node.elts), node)

    def ev_Tuple(self, node):
        return self.checked(tuple(self.items(node.elts)), node)

    def ev_Set(self, node):
        inner = _placeholder(node)
        if inner is not None:
            return self.ev(inner)
        return self.checked(self.attempt(node, set, self.items(node.elts)), node)

    def items(self, elts):
        out = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                value = self.ev(elt.value)
                if not isinstance(value, _SIZED):
                    self.broken(elt, f"cannot unpack a {type(value).__name__}")
                self.within(len(out) + len(value), elt)
                out.extend(value)
            else:
                out.append(self.ev(elt))
        return out

    def ev_Dict(self, node):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # **mapping
                mapping = self.ev(value)
                if not isinstance(mapping, dict):
                    self.broken(value, f"`**` needs a dict, not a {type(mapping).__name__}")
                self.within(len(out) + len(mapping), value)
                out.update(mapping)
            else:
                item_key = self.ev(key)
                self.attempt(node, out.__setitem__, item_key, self.ev(value))
        return self.checked(out, node)

    def ev_Call(self, node):
        if isinstance(node.func, ast.Attribute):  # .copy() (checked)
            value = self.ev(node.func.value)
            if not isinstance(value, (dict, list, set)):
                self.broken(node, f"`.copy()` of a {type(value).__name__}")
            return self.checked(value.copy(), node)
        args = [self.ev(arg) for arg in node.args]
        kwargs = {}
        for keyword in node.keywords:
            value = self.ev(keyword.value)
            mapping = {keyword.arg: value} if keyword.arg is not None else value
            if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
                self.broken(keyword, "`**` needs a dict with string keys")
            if kwargs.keys() & mapping.keys():
                self.broken(keyword, f"repeated keyword {sorted(kwargs.keys() & mapping.keys())}")
            self.within(len(kwargs) + len(mapping), keyword)
            kwargs.update(mapping)
        return self.checked(self.attempt(node, _CALLABLE[node.func.id], *args, **kwargs), node)

    def ev_UnaryOp(self, node):
        value = self.ev(node.operand)
        return self.checked(self.attempt(node, _UNARY[type(node.op)], value), node)

    def ev_BinOp(self, node):
        return self.binop(node, node.op, self.ev(node.left), self.ev(node.right))

    def binop(self, node, op, a, b, inplace=False):
        kind = type(op)
        if kind is ast.Pow and isinstance(b, (int, float)) and b > _MAX_EXPONENT:
            self.refuse(node, f"`{_snippet(node)}`: exponent above {_MAX_EXPONENT}")
        if kind is ast.Mult:
            seq, n = (a, b) if isinstance(a, _SEQUENCES) else (b, a)
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                self.within(len(seq) * max(n, 0), node)
        if kind is ast.Add and isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
            self.within(len(a) + len(b), node)
        if kind is ast.Mod and isinstance(a, (str, bytes)):
            self.check_percent(node, a, b)
        fn = (_INPLACE if inplace else _BINARY)[kind]
        return self.checked(self.attempt(node, fn, a, b), node)

    def check_percent(self, node, fmt, args):
        """Refuse `fmt % args` when its output could exceed the text bound."""
        text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
        estimate, specs, pos = len(text), 0, 0
        while (pos := text.find("%", pos) + 1) > 0:
            if text.startswith("(", pos):  # skip a mapping key, nested brackets as Python does
                depth = 0
                for pos in range(pos, len(text)):
                    depth += (text[pos] == "(") - (text[pos] == ")")
                    if depth == 0:
                        break
                pos += 1
            match = _FORMAT_SPEC.match(text, pos)
            estimate += self.widths(match.groups(), node)
            specs += 1
            pos = match.end() + 1  # past the conversion character
        # Positional arguments are used once each; a mapping's values may be used by every spec.
        uses = specs if isinstance(args, dict) else 1
        estimate += _TEXT_PER_ITEM * self.size(args, node) * uses
        if estimate > _TEXT_PER_ITEM * _MAX_LEN:
            self.refuse(node, f"`{_snippet(node)}` could build more than {_MAX_LEN} characters")

    def widths(self, numbers, node):
        """Sum of the widths and precisions in a format spec; refuses `*` and huge ones."""
        total = 0
        for number in numbers:
            if number == "*" or (number and len(number) > 6):
                self.refuse(node, f"`{_snippet(node)}`: width or precision `*` or above 999999")
            total += int(number or 0)
        return total

    def ev_JoinedStr(self, node):
        parts, estimate = [], 0
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(part.value)
                estimate += len(part.value)
                continue
            value = self.ev(part.value)
            spec = self.ev(part.format_spec) if part.format_spec is not None else ""
            estimate += self.widths(re.findall(r"\d+", spec), part)
            left = _MAX_LEN - estimate // _TEXT_PER_ITEM
            estimate += _TEXT_PER_ITEM * self.size(value, part, limit=left)
            if estimate > _TEXT_PER_ITEM * _MAX_LEN:
                self.refuse(part, f"`{_snippet(node)}` could build more than {_MAX_LEN} "
                                  "characters")
            convert = _CONVERSIONS[part.conversion]
            parts.append(self.attempt(part, format, convert(value) if convert else value, spec))
        return self.checked("".join(parts), node)

    def ev_BoolOp(self, node):
        for value_node in node.values:  # `and` returns the first false value, `or` the first true
            value = self.ev(value_node)
            if bool(value) == isinstance(node.op, ast.Or):
                return value
        return value

    def ev_Compare(self, node):
        left = self.ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.ev(right_node)
            if isinstance(right, _SIZED):
                self.charge(len(right), node)
            result = self.attempt(node, _COMPARE[type(op)], left, right)
            if not result:
                return result
            left = right
        return result

    def ev_IfExp(self, node):
        return self.ev(node.body if self.ev(node.test) else node.orelse)

    # Bounds.

    def attempt(self, node, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _ERRORS as e:
            return self.broken(node, f"`{_snippet(node)}`: {type(e).__name__}: {e}")

    def within(self, length, node):
        if length > _MAX_LEN:
            self.refuse(node, f"`{_snippet(node)}` would build a value of {length} items or "
                              f"characters (at most {_MAX_LEN})")

    def checked(self, value, node):
        """`value`, once its size is within bounds (and charged to the budget)."""
        if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            self.refuse(node, f"`{_snippet(node)}`: a number above 2**{_MAX_INT_BITS}")
        if isinstance(value, _SIZED):
            self.within(len(value), node)
            self.charge(len(value), node)
        return value

    def charge(self, amount, node):
        self.reader.budget -= amount
        if self.reader.budget < 0:
            self.refuse(node, f"the config builds more than {_BUDGET} items and characters in all")

    def size(self, value, node, limit=_MAX_LEN, depth=0):
        """Items and characters in `value`, shared parts counted each time; stops past `limit`."""
        if depth > _MAX_DEPTH:
            self.refuse(node, f"a value nested more than {_MAX_DEPTH} levels deep (or holding "
                              "itself)")
        if isinstance(value, (str, bytes)):
            return len(value)
        if isinstance(value, int):
            return value.bit_length() // 3 + 1
        if not isinstance(value, (list, tuple, set, dict)):
            return 1
        total = 1
        items = itertools.chain(value, value.values()) if isinstance(value, dict) else value
        for item in items:
            total += self.size(item, node, limit - total, depth + 1)
            if total > limit:
                break
        return total
