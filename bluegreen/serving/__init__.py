"""Mechanism: slots, the router and the load → smoke → canary → promote → drain → free lifecycle.

Nothing here speaks HTTP or asks the registry which version should serve; it is told.
"""
