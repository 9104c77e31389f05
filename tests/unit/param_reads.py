"""Which parameters a function of the library reads, found statically with ``ast`` and followed through calls.

A *params expression* is a name bound to the Params object (an argument or local named ``params``, a name assigned
from a params expression, an argument that receives one at some call site) or any ``<x>.params`` (``ctx.params``,
``self.params``). Reading ``<params expr>.<field>`` reads that field; ``getattr(<params expr>, "<field>")`` too, with
the name taken from a string, a loop over a tuple of strings or an f-string over such a tuple. Params' derived
properties (``state_dir``, ``public_url``, ...) are analysed like functions, with ``self`` as the params expression.

Calls are followed to every library function, class (its ``__init__``) and method they can reach: names resolved
through imports (module level and inside functions), ``self.method()``, and for calls on other objects, every
library method of that name and every function stored under that attribute by a call such as
``Check(detect=check_x, repair=repair_x)`` (so ``check.repair(...)`` reaches every repair). A function that is only
referenced (passed to a thread pool, stored in a table) is followed too. Nested functions and lambdas belong to the
function around them. What cannot be resolved (``getattr`` with a computed name) is reported, never guessed.
"""
from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

PYDANTIC_API = {"model_fields", "model_config", "model_copy", "model_dump", "model_dump_json", "model_validate"}


@dataclass
class Read:
    name: str   # a parameter, or 'getattr(...)' when unresolved
    file: str
    line: int


@dataclass
class Unit:
    """One function, method, class or module-level variable of the library."""

    qualname: str
    module: str
    node: ast.AST
    file: str
    args: list[str] = field(default_factory=list)   # positional parameter names (self included for methods)
    cls: str | None = None                           # qualname of the class of a method
    bound: set[str] = field(default_factory=set)     # parameters that receive the Params object
    reads: list[Read] = field(default_factory=list)
    unresolved: list[Read] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # callee qualname -> line of the first call or reference


class Library:
    """The modules of one package, their units, and which parameters each unit reads (directly and transitively)."""

    def __init__(self, src: Path, package: str, params_class: str):
        self.src, self.package = src, package
        self.modules: dict[str, ast.Module] = {}
        self.files: dict[str, str] = {}
        for path in sorted((src / package).rglob("*.py")):
            rel = path.relative_to(src).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            self.modules[name] = ast.parse(path.read_text(), str(path))
            self.files[name] = str(path.relative_to(src.parent) if src.parent in path.parents else path)
        self.units: dict[str, Unit] = {}
        self.imports: dict[str, dict[str, str]] = {}   # module -> local name -> qualified target
        self.attr_funcs: dict[str, set[str]] = {}      # attribute name -> functions stored under it
        self.methods: dict[str, set[str]] = {}         # method name -> qualnames
        self.stored: set[int] = set()                  # ast nodes of functions stored under an attribute
        for mod, tree in self.modules.items():
            self._collect(mod, tree)
        self.params_class = params_class
        pc = self.units[params_class].node
        self.fields = [n.target.id for n in pc.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        self.fields += [f for base in self._bases(params_class) for f in self._fields_of(base) if f not in self.fields]
        self.members = {q.rsplit(".", 1)[1]: q for q in self.units if q.startswith(params_class + ".")}
        self._bind()

    # collection --------------------------------------------------------------------------------------------------
    def _collect(self, mod: str, tree: ast.Module) -> None:
        self.imports[mod] = self._imports_in(mod, tree)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._add(f"{mod}.{node.name}", mod, node, [a.arg for a in node.args.posonlyargs + node.args.args])
            elif isinstance(node, ast.ClassDef):
                cq = f"{mod}.{node.name}"
                self._add(cq, mod, node, [])
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        q = f"{cq}.{item.name}"
                        self._add(q, mod, item, [a.arg for a in item.args.posonlyargs + item.args.args], cls=cq)
                        self.methods.setdefault(item.name, set()).add(q)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        self._add(f"{mod}.{t.id}", mod, node, [])

    def _add(self, q: str, mod: str, node: ast.AST, args: list[str], cls: str | None = None) -> None:
        self.units[q] = Unit(q, mod, node, self.files[mod], args, cls)

    def _imports_in(self, mod: str, node: ast.AST) -> dict[str, str]:
        """Names bound by imports: at module level (not inside functions), or anywhere inside one function."""
        if isinstance(node, ast.Module):
            walk = [n for stmt in node.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    for n in ast.walk(stmt)]
        else:
            walk = list(ast.walk(node))
        out: dict[str, str] = {}
        for n in walk:
            if isinstance(n, ast.Import):
                for a in n.names:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    pkg = mod.split(".") if (self.src / mod.replace(".", "/") / "__init__.py").exists() else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - n.level + 1]
                    base = ".".join(pkg + ([n.module] if n.module else []))
                for a in n.names:
                    out[a.asname or a.name] = f"{base}.{a.name}"
        return out

    def _bases(self, cq: str) -> list[str]:
        node, mod = self.units[cq].node, self.units[cq].module
        out = []
        for b in node.bases:
            q = self.resolve(mod, {}, b)
            if q in self.units and isinstance(self.units[q].node, ast.ClassDef):
                out.append(q)
        return out

    def _fields_of(self, cq: str) -> list[str]:
        node = self.units[cq].node
        own = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        return own + [f for b in self._bases(cq) for f in self._fields_of(b) if f not in own]

    # name resolution ---------------------------------------------------------------------------------------------
    def resolve(self, mod: str, local: dict[str, str], expr: ast.AST) -> str | None:
        """The qualified name an expression (a name or a dotted attribute chain) refers to, if it is in the library."""
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        head = expr.id
        if head in local:
            q = local[head]
        elif head in self.imports[mod]:
            q = self.imports[mod][head]
        elif f"{mod}.{head}" in self.units:
            q = f"{mod}.{head}"
        else:
            return None
        for p in reversed(parts):
            q = f"{q}.{p}"
        return self.canonical(q)

    def canonical(self, q: str, depth: int = 0) -> str | None:
        """Follow re-exports (``from x import f`` in a package ``__init__``) to the unit that defines *q*."""
        if q in self.units or q in self.modules:
            return q
        if depth > 10 or "." not in q:
            return None
        mod, name = q.rsplit(".", 1)
        outer = self.canonical(mod, depth + 1)
        if outer in self.modules and name in self.imports[outer]:
            return self.canonical(self.imports[outer][name], depth + 1)
        if outer is not None and f"{outer}.{name}" in self.units:
            return f"{outer}.{name}"
        return None

    # analysis ----------------------------------------------------------------------------------------------------
    def _register(self, u: Unit) -> None:
        """Functions a call stores under an attribute: ``Check(detect=f)`` or ``Check("id", ..., f)`` (dataclass fields)."""
        node, mod = u.node, u.module
        local = self._imports_in(mod, node) if not isinstance(node, (ast.Assign, ast.AnnAssign)) else {}
        for n in ast.walk(node):
            if not isinstance(n, ast.Call):
                continue
            q = self.resolve(mod, local, n.func)
            pairs = [(kw.arg, kw.value) for kw in n.keywords if kw.arg]
            if q in self.units and isinstance(self.units[q].node, ast.ClassDef):
                pairs += list(zip(self._fields_of(q), n.args))
            for attr, arg in pairs:
                fq = self.resolve(mod, local, arg) if isinstance(arg, (ast.Name, ast.Attribute)) else None
                if fq in self.units and isinstance(self.units[fq].node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.attr_funcs.setdefault(attr, set()).add(fq)
                    self.stored.add(id(arg))

    def _bind(self) -> None:
        for u in self.units.values():
            self._register(u)
        for u in self.units.values():
            if u.cls == self.params_class and u.args:
                u.bound.add(u.args[0])
            u.bound |= {"params"} & set(u.args)
        changed = True
        while changed:
            changed = False
            for u in self.units.values():
                for callee, args in self._scan(u, record=False):
                    cu = self.units.get(callee)
                    if cu is None:
                        continue
                    new = args - cu.bound
                    if new:
                        cu.bound |= new
                        changed = True
        for u in self.units.values():
            self._scan(u, record=True)

    def _scan(self, u: Unit, *, record: bool) -> list[tuple[str, set[str]]]:
        """Walk one unit: params expressions, reads, calls; return (callee, its parameters that get Params)."""
        node, mod = u.node, u.module
        local = self._imports_in(mod, node) if not isinstance(node, (ast.Assign, ast.AnnAssign)) else {}
        names = set(u.bound) | {"params"}
        body = node.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else [node]
        walk = [n for stmt in body for n in ast.walk(stmt)]
        for _ in range(3):  # aliases of aliases
            for n in walk:
                if isinstance(n, (ast.Assign, ast.NamedExpr)):
                    pairs = [(t, n.value) for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
                    pairs = [p for t, v in pairs for p in (  # a, b = params, x
                        zip(t.elts, v.elts) if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple)
                        and len(t.elts) == len(v.elts) else [(t, v)])]
                    names |= {t.id for t, v in pairs if isinstance(t, ast.Name) and self._is_params(v, names)}
        loops = self._loop_strings(mod, walk)
        out: list[tuple[str, set[str]]] = []
        is_params_cls = u.cls == self.params_class
        for n in walk:
            if isinstance(n, ast.Attribute) and self._is_params(n.value, names) and n.attr != "params":
                if record:
                    self._read(u, n.attr, n.lineno)
            elif record and isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getattr" \
                    and len(n.args) >= 2 and self._is_params(n.args[0], names):
                got = self._strings(n.args[1], loops, mod)
                if got is None:
                    u.unresolved.append(Read(f"getattr(params, {ast.unparse(n.args[1])})", u.file, n.lineno))
                for name in got or ():
                    self._read(u, name, n.lineno)
            if isinstance(n, ast.Call):
                out += self._call(u, n, local, names, record)
            elif record and isinstance(n, (ast.Name, ast.Attribute)) and isinstance(n.ctx, ast.Load) \
                    and id(n) not in self.stored:
                q = self.resolve(mod, local, n)
                if q in self.units and q != u.qualname and not (is_params_cls and q == self.params_class):
                    u.calls.setdefault(self._callable(q), n.lineno)
        return out

    def _callable(self, q: str) -> str:
        """A class stands for its __init__ when it has one."""
        init = f"{q}.__init__"
        return init if isinstance(self.units[q].node, ast.ClassDef) and init in self.units else q

    def _call(self, u: Unit, n: ast.Call, local, names, record) -> list[tuple[str, set[str]]]:
        mod = u.module
        targets: list[tuple[str, int]] = []  # callee, offset of its first explicit positional argument
        q = self.resolve(mod, local, n.func)
        if q in self.units:
            callee = self._callable(q)
            targets.append((callee, 1 if callee != q or self.units[callee].cls else 0))
        elif isinstance(n.func, ast.Attribute):
            meth = n.func.attr
            if isinstance(n.func.value, ast.Name) and n.func.value.id == "self" and u.cls:
                own = f"{u.cls}.{meth}"
                targets += [(own, 1)] if own in self.units else []
            elif not (self._is_params(n.func.value, names)):
                targets += [(m, 1) for m in sorted(self.methods.get(meth, ())) if self.units[m].cls != self.params_class]
                targets += [(f, 0) for f in sorted(self.attr_funcs.get(meth, ()))]
        out = []
        for callee, offset in targets:
            cu = self.units[callee]
            got = {cu.args[i + offset] for i, a in enumerate(n.args)
                   if i + offset < len(cu.args) and self._is_params(a, names)}
            got |= {k.arg for k in n.keywords if k.arg and self._is_params(k.value, names)}
            out.append((callee, got))
            if record:
                u.calls.setdefault(callee, n.lineno)
        return out

    def _is_params(self, e: ast.AST, names: set[str]) -> bool:
        return (isinstance(e, ast.Name) and e.id in names) or (isinstance(e, ast.Attribute) and e.attr == "params")

    def _read(self, u: Unit, attr: str, line: int) -> None:
        if attr in self.fields:
            u.reads.append(Read(attr, u.file, line))
        elif attr in self.members:
            u.calls.setdefault(self.members[attr], line)
        elif attr not in PYDANTIC_API and not attr.startswith("__"):
            u.unresolved.append(Read(f"params.{attr} (no such parameter or property)", u.file, line))

    def _loop_strings(self, mod: str, walk) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in walk:
            if isinstance(n, (ast.For, ast.comprehension)) and isinstance(n.target, ast.Name):
                got = self._constant_strings(mod, n.iter)
                if got is not None:
                    out[n.target.id] = got
        return out

    def _constant_strings(self, mod: str, e: ast.AST) -> list[str] | None:
        if isinstance(e, (ast.Tuple, ast.List)) and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in e.elts):
            return [x.value for x in e.elts]
        if isinstance(e, ast.Name):
            q = self.resolve(mod, {}, e)
            unit = self.units.get(q or "")
            if unit and isinstance(unit.node, (ast.Assign, ast.AnnAssign)):
                return self._constant_strings(unit.module, unit.node.value)
        return None

    def _strings(self, e: ast.AST, loops: dict[str, list[str]], mod: str) -> list[str] | None:
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            return [e.value]
        if isinstance(e, ast.Name) and e.id in loops:
            return loops[e.id]
        if isinstance(e, ast.JoinedStr):
            out = [""]
            for part in e.values:
                got = self._strings(part.value if isinstance(part, ast.FormattedValue) else part, loops, mod)
                if got is None:
                    return None
                out = [a + b for a in out for b in got]
            return out
        return None

    # queries -----------------------------------------------------------------------------------------------------
    def reads_of(self, roots: list[str]) -> dict[str, tuple[list[str], Read]]:
        """Every parameter reachable from *roots*: name -> (call path from a root, where it is read)."""
        found: dict[str, tuple[list[str], Read]] = {}
        for path, u in self.reach(roots):
            for r in u.reads:
                found.setdefault(r.name, (path, r))
        return found

    def unresolved_of(self, roots: list[str]) -> list[tuple[list[str], Read]]:
        return [(path, r) for path, u in self.reach(roots) for r in u.unresolved]

    def reach(self, roots: list[str]):
        """(shortest call path, unit) for every unit reachable from *roots*, breadth first."""
        seen: dict[str, list[str]] = {}
        todo = deque()
        for r in roots:
            if r not in self.units:
                raise KeyError(f"{r} is not a function or class of the library")
            todo.append((r, [r]))
            if isinstance(self.units[r].node, ast.ClassDef):  # a class as a root: every method of it
                todo.extend((m, [m]) for m in self.units if self.units[m].cls == r)
        while todo:
            q, path = todo.popleft()
            if q in seen:
                continue
            seen[q] = path
            yield path, self.units[q]
            for callee in self.units[q].calls:
                if callee not in seen:
                    todo.append((callee, path + [callee]))
