"""Designing a run before it trains: strategies as recipes, and what each phase of a recipe will train."""
