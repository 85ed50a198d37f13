"""The desktop's only HTTP client code: tus uploads (tuspy plus our transport), thumbnail fetches, and
the headers every request carries. Nothing else under `tuskit.desktop` imports requests or tuspy.

`errors.py` imports nothing, so the engine's pure policy reads the failure kinds without requests.
"""
