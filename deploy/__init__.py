"""Delivery: image definitions (blubber.yaml, .pipeline/config.yaml) and KServe manifests."""
