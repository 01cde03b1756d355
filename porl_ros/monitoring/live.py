"""The live view: ROS 2 messages, as they are (CDR), over the Foxglove WebSocket protocol
(foxglove-sdk's server; no rclpy here, the recorder node feeds it).

Each topic is one channel with the `ros2msg` schema (the same full definition the bag
stores) and `cdr` encoding, so the Foxglove app decodes it as it decodes a ROS 2 bag:
3D panel for the markers, plots for the status, the diagnostics panel for node health.
"""

from __future__ import annotations

from typing import Callable, Optional

import foxglove
from foxglove import Channel, Context, Schema

from porl_ros.monitoring.bag import MESSAGE_ENCODING, SCHEMA_ENCODING, message_definition

LOCALHOST = "127.0.0.1"


class LiveServer:
    """A Foxglove WebSocket server in its own foxglove Context (only these channels).

    Declare the topics (add_topic) before start(): a client that connects then gets every
    channel in its first advertisement (a channel added while clients subscribe raced with
    their subscriptions in foxglove-sdk 0.30: "subscribe to unknown channel")."""

    def __init__(self, port: int, host: str = LOCALHOST, name: str = "porl_ros",
                 definition: Callable[[str], str] = message_definition) -> None:
        self._context = Context()
        self._definition = definition
        self._schemas: dict[str, Schema] = {}
        self.channels: dict[str, Channel] = {}
        self.requested_port, self.host, self.name = port, host, name
        self.server = None

    def start(self) -> None:
        """Bind and serve; raises RuntimeError (foxglove-sdk's FoxgloveError) when it cannot bind."""
        self.server = foxglove.start_server(name=self.name, host=self.host, port=self.requested_port,
                                            context=self._context)

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else self.requested_port

    def add_topic(self, topic: str, type_name: str) -> None:
        if topic in self.channels:
            return
        if type_name not in self._schemas:
            self._schemas[type_name] = Schema(name=type_name, encoding=SCHEMA_ENCODING,
                                              data=self._definition(type_name).encode())
        self.channels[topic] = Channel(topic, schema=self._schemas[type_name], message_encoding=MESSAGE_ENCODING,
                                       context=self._context)

    def log(self, topic: str, data: bytes, log_time_ns: Optional[int] = None) -> None:
        """Send one CDR message to the clients subscribed to its channel (none: nearly free)."""
        self.channels[topic].log(data, log_time=log_time_ns)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        for channel in self.channels.values():
            channel.close()
