"""Operators' commands that act on running Valkey servers (not on Pulumi state): see each module."""
