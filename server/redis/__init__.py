"""Redis behind the core's ports: upload state, leases, the event stream and feed, rate limits, and the
embedded redis-server that `tuskit server` starts when no --redis-url is given."""
