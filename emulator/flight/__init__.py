"""Arrow Flight transport: Flight (JSON/protobuf tickets) and Flight SQL statement queries on the HTTP port.

``mux`` sniffs each new connection on the one listener: an HTTP/2 preface goes to the gRPC Flight service
(``service``), everything else to the aiohttp HTTP server. ``protocol`` holds the wire formats (tickets,
Flight SQL commands, FlightData). Like ``emulator.http``, this layer only calls into the core
(``Engine.query``); see docs/internals.md "Layers".
"""
