"""The HTTP layer of `python -m service`: connection policy, apart from inference.

Starlette / h11-style: the connection handling is ours, the application is the core's. uvicorn
parses; `service.fastpath.protocol.LatentServeProtocol` (the one module that uses uvicorn's
internals) overrides each uvicorn hook with a few lines that call these parts:

    bytes -> uvicorn's parser -> LatentServeProtocol (the Wire)
                                   |- ConnectionTable  (connections) one per server: activity order
                                   |                   and eviction past MAX_CONNECTIONS, drain slots,
                                   |                   read turns, close counts
                                   |- Guard            (guard) per connection: header, body and write
                                   |                   timeouts, header caps
                                   `- BodyShortcut     (shortcut) per connection: the inference POSTs'
                                        |              bodies read from the parser; refused bodies
                                        |              answered and dropped; `Reply` writes answers
                                        `- Door        (door) the one adapter into the inference core:
                                                       route, admit (headers -> ticket or refusal),
                                                       infer (ticket + body -> answer)
    every other request -> uvicorn's ASGI cycle -> the app

Each part takes the connection as a small typing.Protocol (`Member`, `Guarded`, `Wire`), so it
can be tested without a socket.
"""
