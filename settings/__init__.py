"""Typed settings read from cdk.json, and the settings every runtime shares (the bottom of the import graph)."""
