"""The gateway: the ASGI app, its routes, and the node it serves."""

from __future__ import annotations

from donjon.gateway.app import create_app
from donjon.gateway.assembly import open_node
from donjon.gateway.node import Node
from donjon.gateway.server import serve

__all__ = ["Node", "create_app", "open_node", "serve"]
