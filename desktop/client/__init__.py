"""The desktop's HTTP client code: tus uploads (tuspy plus our transport) and the bandwidth limit."""
