"""The Frame series dock: registering a stack and its drift-corrected mean."""
