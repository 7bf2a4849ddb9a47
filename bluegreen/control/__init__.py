"""The control plane: which version should serve (planner), acting on it (controller), the
fleet's promotion history, and the admin actions."""
