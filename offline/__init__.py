"""Rendering the program without a cluster or the Pulumi CLI: the mock engine, and manifests on disk."""
