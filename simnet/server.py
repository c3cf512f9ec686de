"""simnet's HTTP+JSON layer (stdlib ``ThreadingHTTPServer``).

Routes:
  GET  /health                  -> {"ok": true, "block": head, "manual_clock": bool}
  POST /rpc                     {"method": name, "params": {...}} -> {"result": value}
                                (tagged JSON, see ``codec``); one method per ``Substrate`` need
  POST /admin/advance           {"blocks": N} -> {"block": head}   (N <= 10000)
  POST /admin/reveal_weights    {"netuid", "hotkey", "uids", "weights", "version_key"}
                                -> attach plaintext weights to the hotkey's oldest pending
                                timelocked commit (drand is unreachable offline); the chain's
                                reveal checks run now (422 + error name), the weights are
                                applied at the start of the commit's reveal-epoch block

The admin routes are unauthenticated test hooks: they are served only by a node started with
``--manual-clock`` (403 otherwise), which only tests run.

Errors are JSON ``{"error": {"message", "name"?}}``: 400 for a malformed request (JSON nested
deeper than ``codec.MAX_DEPTH`` included), 403 for an admin route on a running clock, 404 for
an unknown route or method, 408 for a body that does not arrive within ``BODY_TIMEOUT``, 411
for a chunked body, 413 for an oversized body, 422 for a well-formed read the chain refuses
(unknown storage item, a height above the head). The server never crashes on input; a
connection that stays silent for ``IDLE_TIMEOUT`` is closed, freeing its thread.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import runtime_api
from .codec import block_hash, block_number_of, decode, encode, loads
from .node import Node, RequestError
from .runtime_api import UnknownItem

log = logging.getLogger("simnet")
MAX_BODY = 4 * 1024 * 1024
BODY_TIMEOUT = 10.0  # seconds for a whole request body to arrive once its headers are in
IDLE_TIMEOUT = 30.0  # seconds a connection may wait between reads of its request line and headers


class ChainRefusal(Exception):
    """A read the chain answers with an error (HTTP 422)."""


def _param(params: dict, key: str, kind: type | tuple, default: Any = ...) -> Any:
    if key not in params or params[key] is None:
        if default is ...:
            raise RequestError(f"missing parameter {key!r}")
        return default
    value = params[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError(f"parameter {key!r} has the wrong type")
    return value


def _block_of(node: Node, hash_hex: Any) -> int:
    if hash_hex is None:
        return node.state.head
    try:
        number = block_number_of(str(hash_hex))
    except ValueError as error:
        raise RequestError(f"bad block hash: {error}") from error
    if number > node.state.head or block_hash(node.state.chain, number) != hash_hex:
        raise ChainRefusal(f"unknown block {hash_hex}")
    return number


def _block_hash(node: Node, p: dict) -> str:
    block = _param(p, "block", int, node.state.head)
    if block < 0 or block > node.state.head:
        raise ChainRefusal(f"block {block} is not available (head {node.state.head})")
    return block_hash(node.state.chain, block)


def _get_block(node: Node, p: dict) -> Any:
    number = p.get("block_number")
    if number is None:
        number = _block_of(node, p.get("block_hash"))
    if not isinstance(number, int) or number < 0 or number > node.state.head:
        return None
    return {"header": {"number": number, "hash": block_hash(node.state.chain, number),
                       "parentHash": block_hash(node.state.chain, max(0, number - 1))},
            "extrinsics": [{"call": {"call_module": "Timestamp", "call_function": "set",
                                     "call_args": [{"name": "now",
                                                    "value": node.state.timestamp_ms(number)}]}}]}


def _find_extrinsic(node: Node, p: dict) -> Any:
    receipt = node.store.get("receipts", _param(p, "hash", str))
    block = _block_of(node, _param(p, "block_hash", str))
    if receipt is None or receipt["block"] != block:
        return None
    return receipt


def _submit(node: Node, p: dict) -> Any:
    envelope = _param(p, "envelope", dict)
    inner = _param(p, "inner", dict, None)
    return node.submit(envelope, inner)


def _query(node: Node, p: dict) -> Any:
    return runtime_api.query(node.state, _param(p, "module", str), _param(p, "item", str),
                             _param(p, "params", list, None))


def _query_batch(node: Node, p: dict) -> list:
    module, item = _param(p, "module", str), _param(p, "item", str)
    return [runtime_api.query(node.state, module, item, params)
            for params in _param(p, "param_sets", list)]


RPC: dict[str, Callable[[Node, dict], Any]] = {
    "block_number": lambda node, p: node.state.head,
    "finalized_block_number": lambda node, p: node.state.head,
    "block_time": lambda node, p: node.state.block_ms / 1000,
    "spec_version": lambda node, p: 1,
    "block_hash": _block_hash,
    "get_block": _get_block,
    "query": _query,
    "query_batch": _query_batch,
    "query_map": lambda node, p: runtime_api.query_map(
        node.state, _param(p, "module", str), _param(p, "item", str),
        _param(p, "params", list, None)),
    "runtime_call": lambda node, p: runtime_api.runtime_call(
        node.state, _param(p, "api", str), _param(p, "method", str),
        _param(p, "params", (list, dict), [])),
    "constant": lambda node, p: runtime_api.constant(
        node.state, _param(p, "module", str), _param(p, "name", str)),
    "events": lambda node, p: node.store.get("events", str(_block_of(node, p.get("block_hash"))))
    or [],
    "account_next_index": lambda node, p: int(
        node.state.account(_param(p, "address", str))["nonce"]),
    "submit": _submit,
    "find_extrinsic": _find_extrinsic,
}


def make_handler(node: Node) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT  # socket timeout: a silent client is dropped, its thread freed

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per call is noise
            log.debug("%s " + fmt, self.address_string(), *args)

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client went away
                self.close_connection = True

        def _error(self, status: int, message: str, **extra: Any) -> None:
            self._reply(status, {"error": {"message": message, **extra}})

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._reply(200, {"ok": True, "block": node.state.head,
                                  "manual_clock": node.manual_clock,
                                  "block_time": node.block_time})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._error(400, "bad Content-Length")
            if length > MAX_BODY or length < 0:
                self.close_connection = True
                return self._error(413, "request body too large")
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return self._error(411, "send the body with a Content-Length")
            if self.path.startswith("/admin/") and not node.manual_clock:
                self.close_connection = True  # the body is left unread
                return self._error(403, "admin routes are served only by a node started with "
                                        "--manual-clock")
            raw = self._read_body(length)
            if raw is None:
                return None
            try:
                body = loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                body = decode(body)
            except (ValueError, TypeError, KeyError, RecursionError) as error:
                return self._error(400, f"malformed JSON: {error}")
            route = {"/rpc": self._rpc, "/admin/advance": self._advance,
                     "/admin/reveal_weights": self._reveal}.get(self.path)
            if route is None:
                return self._error(404, f"no route {self.path}")
            try:
                route(body)
            except RequestError as error:
                self._error(400, str(error))
            except (ChainRefusal, UnknownItem) as error:
                self._error(422, str(error), name=type(error).__name__)
            except Exception as error:  # noqa: BLE001 - the node must survive any input
                log.warning("simnet request failed: %s", traceback.format_exc())
                self._error(400, f"{type(error).__name__}: {error}")

        def _read_body(self, length: int) -> bytes | None:
            """The body, or None once answered 400 (it ended early) or 408 (it took longer
            than BODY_TIMEOUT in all, however slowly it trickled in)."""
            deadline = time.monotonic() + BODY_TIMEOUT
            chunks: list[bytes] = []
            received = 0
            try:
                while received < length:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    self.connection.settimeout(remaining)
                    chunk = self.rfile.read1(min(length - received, 64 * 1024))
                    if not chunk:
                        self.close_connection = True
                        self._error(400, f"request body ended after {received} of {length} bytes")
                        return None
                    chunks.append(chunk)
                    received += len(chunk)
            except TimeoutError:
                self.close_connection = True
                self._error(408, f"request body not received within {BODY_TIMEOUT:g}s")
                return None
            finally:
                self.connection.settimeout(self.timeout)
            return b"".join(chunks)

        def _rpc(self, body: dict) -> None:
            method = body.get("method")
            params = body.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise RequestError("expected {'method': str, 'params': object}")
            handler = RPC.get(method)
            if handler is None:
                return self._error(404, f"unknown method {method!r}")
            with node.lock:
                result = handler(node, params)
            self._reply(200, {"result": encode(result)})

        def _advance(self, body: dict) -> None:
            blocks = _param(body, "blocks", int, 1)
            if not 0 <= blocks <= 10_000:
                raise RequestError("blocks must be within 0..10000")
            self._reply(200, {"block": node.advance(blocks)})

        def _reveal(self, body: dict) -> None:
            result = node.reveal_weights(
                _param(body, "netuid", int), _param(body, "hotkey", str),
                _param(body, "uids", list), _param(body, "weights", list),
                _param(body, "version_key", int, 0))
            self._reply(200 if result["success"] else 422, result)

    return Handler


def serve(db: str, host: str, port: int, block_time: float, manual_clock: bool,
          admin_freeze_window: int | None = None) -> None:
    node = Node(db, block_time=block_time, manual_clock=manual_clock,
                admin_freeze_window=admin_freeze_window)
    httpd = ThreadingHTTPServer((host, port), make_handler(node))
    httpd.daemon_threads = True
    node.start()
    log.info("simnet on http://%s:%d (db %s, block %d, %s clock)", host, port, db,
             node.state.head, "manual" if manual_clock else f"{block_time}s")
    print(f"simnet ready on http://{host}:{port} at block {node.state.head}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        node.stop()

