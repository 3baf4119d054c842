"""The gateway: the ASGI app (`app.create_app`), its routes, the node it serves
(`node.Node`, made by `assembly.open_node`) and the server (`server.serve`).

Nothing is imported here: `donjon init` needs only `gateway.tls`, and importing the
package must not pull in the app, the lifecycle and the scanner with it (about 1 s).
"""
