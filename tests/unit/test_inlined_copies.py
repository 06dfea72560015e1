"""R3-R5, C1, C5: the pure recv and send inline their helpers, and say exactly what the helpers say.

For P1 and P2 the pure ``recv`` and ``send`` repeat, inline, the steps
that ``_take_reader``, ``_release_last``, ``_read_buffer``, ``_give_reader``
and ``_give_writer`` are for the other calls (two method calls cost 3-5%
of a pure call). A copy that drifts from its helper is a rule kept on one
path and broken on the other; these tests hold each copy to its helper's
text, statement by statement (comments aside), reading the local aliases
``reader`` and ``writer`` as the attributes they stand for.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest

from udpio import _socket


class _Aliases(ast.NodeTransformer):
    # `reader` and `writer` in recv and send are self._reader and self._writer.
    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("reader", "writer"):
            return ast.copy_location(
                ast.Attribute(value=ast.Name(id="self", ctx=ast.Load()), attr=f"_{node.id}", ctx=node.ctx),
                node,
            )
        return node


def _body(name: str) -> list[str]:
    # The statements of Socket.<name>, each as its AST (comments and the
    # docstring left out), with the aliases read as attributes.
    tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(_socket.Socket, name))))
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    statements = function.body
    if statements and isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
        statements = statements[1:]
    return [ast.dump(_Aliases().visit(statement)) for statement in statements]


def _blocks(name: str) -> list[list[str]]:
    # Every statement list of Socket.<name> (its body, and each nested
    # body, handler and else), as ASTs: a helper must stand in one of them
    # as an unbroken run.
    tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(_socket.Socket, name))))
    blocks: list[list[str]] = []

    def walk(statements: list[ast.stmt]) -> None:
        blocks.append([ast.dump(_Aliases().visit(statement)) for statement in statements])
        for statement in statements:
            for field in ("body", "orelse", "finalbody"):
                if getattr(statement, field, None):
                    walk(getattr(statement, field))
            for handler in getattr(statement, "handlers", []):
                walk(handler.body)

    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    walk(function.body)
    return blocks


def _stands_in(helper: list[str], blocks: list[list[str]]) -> bool:
    size = len(helper)
    return any(block[i : i + size] == helper for block in blocks for i in range(len(block) - size + 1))


@pytest.mark.parametrize(
    ("helper", "method"),
    [
        pytest.param("_take_reader", "recv", id="c1_take_reader_in_recv"),
        pytest.param("_release_last", "recv", id="r3_r4_r5_release_last_in_recv"),
        pytest.param("_give_reader", "recv", id="c5_give_reader_in_recv"),
        pytest.param("_give_writer", "send", id="c5_give_writer_in_send"),
    ],
)
def test_r3_c1_c5_an_inlined_copy_says_exactly_what_its_helper_says(helper: str, method: str) -> None:
    assert _stands_in(_body(helper), _blocks(method)), f"{method} no longer inlines {helper} as it stands"


def test_r3_the_inlined_read_buffer_step_is_read_buffers_own() -> None:
    # _read_buffer is _release_last, then the buffer to read into: recv's
    # copy of the second part, too.
    steps = _body("_read_buffer")
    assert steps[0] == ast.dump(ast.parse("self._release_last()").body[0])
    assert steps[-1] == ast.dump(ast.parse("return buf").body[0])
    assert _stands_in(steps[1:-1], _blocks("recv"))


def test_r3_a_drifted_copy_is_seen() -> None:
    # The check itself can fail: a helper with one statement more is not in recv.
    drifted = [*_body("_release_last"), ast.dump(ast.parse("self._buf = None").body[0])]
    assert not _stands_in(drifted, _blocks("recv"))
