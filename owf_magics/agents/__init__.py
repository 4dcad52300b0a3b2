"""Agents: the native tool-calling loop and its accounting, model providers, prices, rate limits and budgets."""
