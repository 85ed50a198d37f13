"""HTTP in front of the core: Tornado handlers, admission (tokens, signed links, rate limits), CORS, event
streams and chunked bodies with trailers. Reaches state and bytes only through the core service."""
