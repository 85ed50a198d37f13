"""What happens around and after the bytes: type sniffing, images and thumbnails, post-processing,
webhooks and metrics."""
