"""Kubernetes: what the dataflow reads of its StatefulSet, and the chart's hook commands.

Only this package talks to the API server, through the official `kubernetes` client, with
the narrow permissions the chart's Roles grant.
"""
