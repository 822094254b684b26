"""Mechanics: finite-element tissue and flow solvers, reduced models. No Qt here."""
