"""HTTP layer: parse requests, call the engine, serialise answers. No state or rules live here."""
