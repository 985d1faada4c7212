"""Structural generators, gate netlists, simulation and the EDA flow (the only place running EDA tools)."""
