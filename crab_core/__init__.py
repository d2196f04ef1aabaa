"""Crab Studio core library."""
