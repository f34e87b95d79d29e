"""Reusable Pulumi components for running Valkey on Kubernetes, and the pure code they use."""
