"""Faces' side of the engine: talking to it over its Unix socket (may import aiohttp and core, never ui or server)."""
