"""Kernel and terminal output bounded by the project server (not the kernel).

Jupyter's own iopub rate limit counts only ``stream`` bytes (a ``display_data`` of any
size passes) and resets whenever the kernel reports ``idle``, which code in the kernel can
send at will. The connection class here replaces it with one that:

- counts every outgoing message on every channel (header, content and binary buffers);
- replaces a message over the tier's ``kernel.max_output_bytes`` by a visible "output
  truncated" notice (an iopub stream on stderr; for replies on the shell, control and
  stdin channels, a small reply of the same type that carries the notice);
- drops iopub output while the bytes or messages per second, averaged over
  ``kernel.rate_limit_window``, are over ``kernel.iopub_data_rate_limit`` or
  ``kernel.iopub_msg_rate_limit``, with one notice each time, and resumes below 80 %.

:class:`BoundedTermSocket` applies the same byte rate to terminal output. The limits come
from ``ENCLAVE_BROWSER_POLICY`` (set by the hub). Like everything inside the container,
this is defence in depth: the researcher's code runs as the same user as the server. The
bound the container cannot change is the egress meter outside it.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server_terminals.handlers import TermSocket

from enclave.hub.browser_policy import KernelLimits, from_environment
from enclave.hub.rate_window import OutputWindow

TRUNCATED = (
    "[output truncated: this message was {size} bytes; at this project's tier a message may "
    "carry at most {limit} bytes. Write large results to a file in the workspace instead.]"
)
RATE_EXCEEDED = (
    "[output paused: more than {rate:g} bytes or {msgs:g} messages per second over {window:g} s, "
    "this project's tier limit. Output is dropped until it slows down.]"
)
# Messages that carry no output and that the browser needs to follow the kernel's state.
UNCOUNTED = frozenset({"status"})


def _reduced_content(msg_type: str, content: dict[str, Any], notice: str) -> dict[str, Any]:
    """A small reply of the same type that says why its content is missing."""
    if msg_type == "inspect_reply":
        return {"status": "ok", "found": True, "data": {"text/plain": notice}, "metadata": {}}
    if msg_type == "complete_reply":
        return {"status": "ok", "matches": [], "cursor_start": 0, "cursor_end": 0, "metadata": {}}
    if msg_type == "input_request":
        return {"prompt": notice + " ", "password": False}
    reduced: dict[str, Any] = {"status": "error", "ename": "OutputTruncated", "evalue": notice, "traceback": [notice]}
    if isinstance(content.get("execution_count"), int):
        reduced["execution_count"] = content["execution_count"]
    return reduced


class BoundedKernelWebsocketConnection(ZMQChannelsWebsocketConnection):
    """The kernel websocket with this tier's output limits (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits: KernelLimits = from_environment().kernel
        self.iopub_data_rate_limit = self.limits.iopub_data_rate_limit
        self.iopub_msg_rate_limit = self.limits.iopub_msg_rate_limit
        self.rate_limit_window = self.limits.rate_limit_window
        self._window = OutputWindow(self.limits.iopub_data_rate_limit, self.limits.iopub_msg_rate_limit,
                                    self.limits.rate_limit_window)
        self._notified = False

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        if isinstance(stream, str):
            stream = self.channels[stream]
        channel = getattr(stream, "channel", None)
        _, fed = self.session.feed_identities(outgoing_msg)
        parts = fed[1:]
        size = sum(len(part) for part in parts)
        header = self.session.unpack(parts[0])
        msg_type = header.get("msg_type", "")
        if size > self.limits.max_output_bytes:
            notice = TRUNCATED.format(size=size, limit=self.limits.max_output_bytes)
            self.log.warning("enclave: %s %s of %d bytes truncated", channel, msg_type, size)
            fed = self._replacement(channel, msg_type, parts, notice)
            parts = fed[1:]
            size = sum(len(part) for part in parts)
        if msg_type not in UNCOUNTED:
            if self._window.admit(size):
                self._notified = False
            elif channel == "iopub":
                self._notify_rate(parts)
                return
            # A reply the browser waits for still goes, reduced to a few hundred bytes.
            elif size > 1024:
                fed = self._replacement(channel, msg_type, parts, self._rate_notice())
                parts = fed[1:]
        self._send(stream, channel, fed, parts)

    def _send(self, stream: Any, channel: str | None, fed: list[Any], parts: list[Any]) -> None:
        """What ZMQChannelsWebsocketConnection.handle_outgoing_message does after its
        own rate limit."""
        if self.subprotocol == "v1.kernel.websocket.jupyter.org":
            msg = {"header": None, "parent_header": None, "content": None}
            self._on_error(channel, msg, parts)
            self._on_zmq_reply(stream, parts)
        else:
            msg = self.session.deserialize(fed)
            self._on_error(channel, msg, parts)
            self._on_zmq_reply(stream, msg)

    def _replacement(self, channel: str | None, msg_type: str, parts: list[Any], notice: str) -> list[Any]:
        """The serialised (signature first) replacement of an over-limit message."""
        parent = self.session.unpack(parts[1])
        if channel == "iopub":
            new = self.session.msg("stream", content={"name": "stderr", "text": notice + "\n"}, parent=parent)
        else:
            try:
                content = self.session.unpack(parts[3])
            except Exception:  # noqa: BLE001 - unreadable content is replaced all the same
                content = {}
            new = self.session.msg(msg_type, content=_reduced_content(msg_type, content, notice), parent=parent)
        _, fed = self.session.feed_identities(self.session.serialize(new))
        return fed

    def _rate_notice(self) -> str:
        return RATE_EXCEEDED.format(rate=self.limits.iopub_data_rate_limit, msgs=self.limits.iopub_msg_rate_limit,
                                    window=self.limits.rate_limit_window)

    def _notify_rate(self, parts: list[Any]) -> None:
        if self._notified:
            return
        self._notified = True
        self.log.warning("enclave: kernel output over the rate limit; dropping output")
        self.write_stderr(self._rate_notice(), self.session.unpack(parts[1]))


class BoundedTermSocket(TermSocket):
    """A terminal websocket whose output is held to the tier's byte rate."""

    def initialize(self, name: str, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(name, term_manager=self.settings["terminal_manager"], **kwargs)
        limits = from_environment().kernel
        self._limits = limits
        self._window = OutputWindow(limits.iopub_data_rate_limit, float("inf"), limits.rate_limit_window)
        self._paused = False

    def on_pty_read(self, text: str) -> None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if self._window.admit(size):
            self._paused = False
            super().on_pty_read(text)
        elif not self._paused:
            self._paused = True
            super().on_pty_read(
                f"\r\n[enclave: terminal output over {self._limits.iopub_data_rate_limit:g} bytes per second, "
                "this project's tier limit; output dropped until it slows down]\r\n"
            )
