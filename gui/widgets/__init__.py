"""Reusable widgets and drawing helpers shared by the panels."""
