"""Where upload bytes live (core.ports.BlobStore): the only code that knows files or object keys."""
