"""Signed webhooks: events Runtune sends to its users' endpoints (Standard Webhooks format)."""
