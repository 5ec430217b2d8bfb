"""workbench: a terminal model workbench."""
