"""Ports: one small interface per external system (DESIGN.md section 2).

Adapters live in `runtune.adapters`, named after their backend, and are chosen in one place
(`runtune.wiring`). Deployables depend on these protocols, never on a backend.
"""
